"""The operator's commands: db upgrade, enroll, import, run, status, leads, lead, tasks,
touches, send-test."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.app import App
from engine.authoring.inputs import parse_set
from engine.cli.common import ConfigOption, console, load_app, print_lead
from engine.cli.lead_check import FieldCheck, render_problems
from engine.cli.leads_csv import open_leads_csv
from engine.domain.states import EnrollmentState
from engine.errors import NotFound

SetOption = typer.Option(None, "--set", metavar="KEY=VALUE",
                         help="A lead field, e.g. --set first_name=Ada --set stage=decision "
                              "(other keys become custom fields). Repeatable.")

db_app = typer.Typer(help="The database: `nurture db upgrade` creates or migrates it.",
                     no_args_is_help=True)
tasks_app = typer.Typer(help="Manual steps (calls, notes) waiting for a rep.",
                        invoke_without_command=True)
touches_app = typer.Typer(help="Touches that need the operator: in doubt after a crash, or "
                               "failed (`--failed`, then `retry ID` once the cause is fixed).",
                          invoke_without_command=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.add_typer(db_app, name="db")
    for command in (enroll, import_leads, run, status, leads, lead, send_test):
        name = {"import_leads": "import", "send_test": "send-test"}.get(command.__name__)
        app.command(name)(command)
    app.add_typer(tasks_app, name="tasks")
    app.add_typer(touches_app, name="touches")



def _app(config: Path | None, schema: bool = True) -> App:
    return load_app(config, schema)


def _when(at: datetime | None, now: datetime | None = None) -> str:
    if at is None:
        return "-"
    now = now or datetime.now(UTC)
    secs = (at - now).total_seconds()
    rel = "now" if abs(secs) < 1 else f"in {_span(secs)}" if secs > 0 else f"{_span(-secs)} ago"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC ({rel})"


def _span(secs: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit}"
    return f"{secs:.0f}s"


# --- db, enroll, import ---------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption) -> None:
    """Create the database or bring it to the newest schema (safe to run again)."""
    app = _app(config, schema=False)
    app.store.db.upgrade()
    console().print(f"database {app.store.db.safe_url} is at schema "
                 f"{app.store.db.current_revision()}")


def enroll(
    sequence: str = typer.Argument(..., help="The sequence to enroll into."),
    email: str = typer.Option(..., "--email", help="The lead's email address."),
    values: list[str] = SetOption,
    config: Path = ConfigOption,
) -> None:
    """Enroll one lead (merged into the lead with that address, if any)."""
    app = _app(config)
    fields = dict(parse_set(item) for item in values or [])  # as preview and simulate do
    outcome = app.enroller().enroll(sequence, email, fields, source="cli")
    out = console()
    if outcome.status == "already":
        out.print(f"{outcome.email} is already active in {sequence}: not enrolled twice "
                  "(lead fields merged)")
        return
    out.print(f"enrolled {outcome.email} in {sequence} (enrollment {outcome.enrollment_id}); "
              f"first touch due {_when(outcome.due_at)}")
    lead = app.store.leads.get(outcome.email)
    problems = render_problems(app, sequence, lead.as_mapping()) if lead else []
    if problems:
        out.print(f"[yellow]warning:[/yellow] its emails will fail at send time: "
                  f"{'; '.join(problems)}. Give the lead the field (`nurture touches retry ID "
                  "--set KEY=VALUE` once it failed) or fix the template")


def import_leads(
    sequence: str = typer.Argument(..., help="The sequence to enroll into."),
    path: Path = typer.Argument(..., metavar="LEADS.csv",
                                help="CSV with a header row and an email column; other "
                                     "columns become lead fields."),
    rejects: Path = typer.Option(None, "--rejects", help="Write rejected rows to this CSV."),
    config: Path = ConfigOption,
) -> None:
    """Enroll every lead of a CSV file; rejected rows are listed with their reason."""
    app = _app(config)
    app.catalog.get(sequence)
    leads_csv = open_leads_csv(path)
    out, fields = console(), FieldCheck()
    with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("import", total=leads_csv.total)
        report = app.enroller().enroll_rows(
            sequence, fields.watch(leads_csv.rows()), source=f"csv:{path.name}",
            progress=lambda n: bar.advance(task, n))
    out.print(f"{report.enrolled} enrolled, {report.already} already active (merged), "
              f"{report.duplicates} duplicate rows merged, {len(report.rejected)} rejected")
    # In file order: rows refused while reading and rows refused by the store (suppressed,
    # with a rep) are found at different moments.
    refused = sorted(report.rejected, key=lambda r: r.row)
    rejected = {r.row for r in refused}
    for warning in [*leads_csv.warnings, *fields.warnings(app, sequence, rejected)]:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    if refused:
        table = Table("line", "email", "reason", title="rejected rows")
        for r in refused[:50]:
            table.add_row(str(r.row), r.email, r.reason)
        out.print(table)
        if len(refused) > 50:
            out.print(f"... and {len(refused) - 50} more (use --rejects FILE)")
    if rejects and refused:
        with rejects.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["line", "email", "reason"])
            w.writerows((r.row, r.email, r.reason) for r in refused)


# --- the daemon ---------------------------------------------------------------------------

def run(
    once: bool = typer.Option(False, "--once", help="One pass: read new replies in each "
                                                    "watched mailbox, send what is due now, "
                                                    "then exit (for cron-style hosting)."),
    reload_sequences: bool = typer.Option(
        False, "--reload-sequences", help="Watch sequences/ and templates/ and reload them "
                                          "when a file changes (SIGHUP always reloads)."),
    config: Path = ConfigOption,
) -> None:
    """Run the engine: send due touches, watch replies, serve HTTP, until SIGTERM."""
    import signal

    from engine.daemon.logs import configure
    from engine.daemon.runner import Daemon
    from engine.daemon.watchers import Watchers, add_watchers

    app = _app(config)
    configure(app.settings.log_format)
    if not once:  # a reload asked for before the daemon listens for it must not kill it
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def main() -> None:
        daemon = Daemon(app)
        if once:
            totals = await daemon.run_once(before=Watchers(app).catch_up_once)
            console().print(describe_totals(totals))
            if totals.get("retry"):
                console().print("a touch waiting to retry had a temporary failure (the "
                                "relay's answer is in the log, `touch_retry`, and in `nurture "
                                "status`); it is tried again with backoff by the next runs")
            if totals.get("fail") or totals.get("failed"):
                console().print("a failed touch stops its enrollment: `nurture touches "
                                "--failed` lists those that can be retried (bounces cannot); "
                                "fix the cause, then `nurture touches retry ID`")
        else:
            from engine.daemon.http import add_http
            from engine.daemon.reload import add_reload

            watchers = add_watchers(daemon)  # one `watch:<mailbox>` task per IMAP mailbox
            add_http(daemon, watchers.status)  # the API, unsubscribe links, rep pages, /healthz
            add_reload(daemon, watch=reload_sequences)  # SIGHUP (and polling) reloads
            await daemon.run()
    asyncio.run(main())


def send_test(
    sequence: str = typer.Argument(..., help="The sequence."),
    step: str = typer.Argument(..., help="The step's name."),
    to: str = typer.Option(..., "--to", help="Where to send the test message."),
    config: Path = ConfigOption,
) -> None:
    """Send one step, rendered for the sample lead, to an address; records nothing."""
    from engine.services.send_test import send_test as send

    app = _app(config, schema=False)

    async def main() -> str:
        try:
            return await send(app.catalog, app.maker, app.sender, app.clock,
                              dict(app.settings.mailboxes), sequence, step, to)
        finally:
            await app.sender.close()
    console().print(f"sent {sequence}/{step} to {to} (Message-ID {asyncio.run(main())})")


# --- reports --------------------------------------------------------------------------------

def status(config: Path = ConfigOption) -> None:
    """Backlog, oldest due touch, in-doubt touches, paused mailboxes, enrollments waiting on a
    sequence that is not loaded, and workers."""
    app = _app(config)
    now = app.clock.now()
    st = app.store.reports.status(now)
    out = console()
    oldest = _span((now - st.oldest_due_at).total_seconds()) if st.oldest_due_at else "-"
    out.print(f"due now: {st.due_now} (oldest waiting {oldest}); next due: "
              f"{_when(st.next_due_at, now)}; waiting to retry: {st.waiting_retry}")
    if st.retry_error:
        out.print(f"[yellow]latest retry reason[/yellow]: {st.retry_error}", soft_wrap=True)
    out.print("enrollments: " + _counts(st.enrollments))
    out.print("touches: " + _counts(st.touches) + f"; suppressed addresses: {st.suppressed}")
    if st.in_doubt:
        out.print(f"[yellow]{st.in_doubt} touch(es) in doubt[/yellow]: "
                  "see `nurture touches --in-doubt`")
    for name, (until, reason) in app.store.mailboxes.paused(now).items():
        out.print(f"[yellow]mailbox {name} paused[/yellow] until {_when(until, now)}: {reason}")
    for name, n, why in app.catalog.current.unavailable(app.store.reports.live_by_sequence()):
        out.print(f"[yellow]sequence {name} is not loaded[/yellow]: {n} enrollment"
                  f"{'s' if n != 1 else ''} waiting (sent once it loads); {why}",
                  soft_wrap=True)  # one line each, with the whole file path
    table = Table("worker", "pid", "started", "last heartbeat", title="workers")
    for w in app.store.workers.workers():
        table.add_row(w.name, str(w.pid), _when(w.started_at, now), _when(w.heartbeat_at, now))
    out.print(table if table.row_count else "workers: none running")


# What `run --once` did, in words, in this order (SendDue's tallies and the claim count).
_TOTALS = {"claimed": "claimed", "sent": "sent", "retry": "waiting to retry",
           "failed": "failed", "fail": "could not be made", "opentask": "tasks opened",
           "skip": "skipped", "defer": "deferred", "blocked": "not sent (stopped meanwhile)",
           "error": "errors", "lost": "claims lost"}


def describe_totals(totals: Mapping[str, int]) -> str:
    """`claimed 2, sent 2`; `nothing was due` when a run claimed nothing."""
    if not totals.get("claimed"):
        return "nothing was due"
    known = [f"{label} {totals[k]}" for k, label in _TOTALS.items() if totals.get(k)]
    return ", ".join(known + [f"{k} {v}" for k, v in sorted(totals.items())
                              if k not in _TOTALS and v])


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def leads(
    sequence: str = typer.Option(None, "--sequence", help="Only this sequence."),
    state: EnrollmentState = typer.Option(None, "--state", help="Only enrollments in this "
                                                                "state."),
    limit: int = typer.Option(50, "--limit", help="At most this many rows, newest first."),
    config: Path = ConfigOption,
) -> None:
    """Enrollments, newest first: lead, sequence, state, touches so far, next due."""
    app = _app(config)
    table = Table("email", "name", "sequence", "state", "touches", "next due")
    now = app.clock.now()
    for r in app.store.reports.enrollments(limit, sequence, state):
        name = " ".join(p for p in (r["first_name"], r["last_name"]) if p)
        st = r["state"] + (f" ({r['stop_reason']})" if r["stop_reason"] else "")
        table.add_row(r["email"], name, r["sequence"], st, str(r["touch_number"]),
                      _when(r["next_due_at"], now))
    console().print(table if table.row_count else "no enrollments")


def lead(email: str = typer.Argument(..., help="The lead's address."),
         config: Path = ConfigOption) -> None:
    """A lead's data, enrollments and timeline (every touch and event)."""
    app = _app(config)
    rep = app.store.reports.lead(email)
    if rep is None:
        raise NotFound(f"no lead with address {email}")
    out = console()
    print_lead(out, rep.lead, rep.suppressed)
    for e in rep.enrollments:
        out.print(f"enrollment {e['id']}: {e['sequence']} {e['state']} "
                  f"{e['stop_reason']} step {e['step_index']}, next due "
                  f"{_when(e['next_due_at'])}")
    table = Table("when", "what", "details", title="timeline")
    for entry in rep.timeline:
        details = ", ".join(f"{k}={v}" for k, v in entry.data.items() if v not in ("", None))
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.kind, details)
    out.print(table)


# --- tasks and in-doubt touches ---------------------------------------------------------------

@tasks_app.callback()
def tasks(ctx: typer.Context, config: Path = ConfigOption) -> None:
    """List open tasks (or `nurture tasks done ID`)."""
    if ctx.invoked_subcommand is not None:
        return
    app = _app(config)
    table = Table("id", "lead", "sequence", "step", "kind", "note")
    for t in app.store.reports.open_tasks():
        table.add_row(str(t.id), t.email, t.sequence, t.step, t.task_kind, t.body_text)
    console().print(table if table.row_count else "no open tasks")


@tasks_app.command("done")
def tasks_done(task_id: int = typer.Argument(..., metavar="ID"),
               by: str = typer.Option("", "--by", help="Who did it (a rep's name)."),
               config: Path = ConfigOption) -> None:
    """Mark a task done; the lead's sequence carries on from now."""
    app = _app(config)
    app.tasks.complete(task_id, by)
    console().print(f"task {task_id} done; the sequence continues")


@touches_app.callback()
def touches(ctx: typer.Context,
            in_doubt: bool = typer.Option(False, "--in-doubt", help="Touches in doubt (the "
                                          "default listing)."),
            failed: bool = typer.Option(False, "--failed", help="Touches that failed and "
                                        "stopped their enrollment (a template, a lead's "
                                        "missing field): fix the cause, then `retry ID`."),
            config: Path = ConfigOption) -> None:
    """List touches in doubt after a crash; resolve with `resend ID` or `mark-sent ID`."""
    if ctx.invoked_subcommand is not None:
        return
    if in_doubt and failed:
        raise typer.BadParameter("--in-doubt and --failed list different touches: give one")
    app = _app(config)
    if failed:
        table = Table("id", "lead", "sequence", "step", "error")
        for t in app.store.reports.failed():
            table.add_row(str(t.id), t.email, t.sequence, t.step, t.error)
        console().print(table if table.row_count else "no failed touches to retry")
        return
    table = Table("id", "lead", "sequence", "step", "Message-ID", "mailbox", "attempts")
    for t in app.store.reports.in_doubt():
        table.add_row(str(t.id), t.email, t.sequence, t.step, t.message_id, t.mailbox,
                      str(t.attempts))
    console().print(table if table.row_count else "no touches in doubt")


@touches_app.command("resend")
def touches_resend(touch_id: int = typer.Argument(..., metavar="ID"),
                   config: Path = ConfigOption) -> None:
    """Send an in-doubt touch again (same Message-ID): you checked it did not arrive."""
    _app(config).recovery.resend(touch_id, "cli")
    console().print(f"touch {touch_id} will be sent again on the next pass")


@touches_app.command("retry")
def touches_retry(touch_id: int = typer.Argument(..., metavar="ID"),
                  values: list[str] = typer.Option(
                      None, "--set", metavar="KEY=VALUE",
                      help="Give the lead a field it lacked (as enroll --set). Repeatable."),
                  config: Path = ConfigOption) -> None:
    """Make a failed touch again once its cause is fixed (the template, or the lead's data
    with --set); its enrollment goes on. Not for bounces: that address refused mail."""
    fields = dict(parse_set(item) for item in values or [])  # as enroll --set
    _app(config).recovery.retry(touch_id, "cli", fields)
    console().print(f"touch {touch_id} will be made and sent again on the next pass; its "
                 "enrollment is active again")


@touches_app.command("mark-sent")
def touches_mark_sent(touch_id: int = typer.Argument(..., metavar="ID"),
                      config: Path = ConfigOption) -> None:
    """Record an in-doubt touch as sent (you found it in the mailbox); the sequence goes on."""
    _app(config).recovery.mark_sent(touch_id, "cli")
    console().print(f"touch {touch_id} marked sent")
