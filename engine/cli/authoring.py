"""The marketer's commands: init, validate, preview and simulate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.authoring import starter
from engine.authoring.catalog import Catalog, load_catalog
from engine.authoring.inputs import lead_from_inputs, parse_moment, parse_stage_change
from engine.authoring.preview import Touch, html_page, render_entries
from engine.authoring.templates import Renderer
from engine.authoring.validate import all_problems, check_files
from engine.cli.common import ConfigOption, console, load_app
from engine.domain.context import default_sample_sender, lead_view
from engine.domain.sequence import Sequence
from engine.domain.timeline import simulate as simulate_timeline
from engine.errors import NotFound
from engine.services.enroll import normalise_email
from engine.settings import Settings

SequencesOption = typer.Option(
    None, "--sequences", help="Sequences directory (default: sequences_dir from the config). "
                              "Env: NURTURE_SEQUENCES_DIR.")
TemplatesOption = typer.Option(
    None, "--templates", help="Templates directory (default: templates_dir from the config). "
                              "Env: NURTURE_TEMPLATES_DIR.")
LeadOption = typer.Option(
    None, "--lead", help="A JSON file with one lead: {\"email\": ..., \"first_name\": ...}. "
                         "Default: the sequence's sample_lead.")
SetOption = typer.Option(
    None, "--set", help="Set a lead field, e.g. --set first_name=Grace --set stage=decision "
                        "(custom fields too). Repeatable.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(init)
    app.command()(validate)
    app.command()(preview)
    app.command()(simulate)


def init(
    directory: Path = typer.Argument(..., metavar="DIR", help="Where to create the project "
                                                              "(created if new)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that already exist."),
) -> None:
    """Create a new project: nurture.yaml, an example sequence and its templates."""
    out = console()
    written = starter.write_project(directory, force=force)
    for path in written:
        out.print(f"created {path}")
    out.print(f"\nNext: cd {directory} && nurture validate && nurture preview welcome")


def validate(
    paths: list[Path] = typer.Argument(None, metavar="[PATH]...", help="Sequence files or "
                                       "directories (default: the sequences directory)."),
    templates: Path = TemplatesOption,
    config: Path = ConfigOption,
) -> None:
    """Check sequences and their templates; print every problem as file:line: message."""
    out, settings = console(), _settings(config)
    mailboxes = set(settings.mailboxes) or None
    # Owners are checked when there is a config (or NURTURE_REPS): with none, reps are unknown.
    reps = ({r.name for r in settings.reps}
            if settings.config_path is not None or settings.reps else None)
    checked, problems = check_files(paths or [settings.sequences_dir],
                                    templates or settings.templates_dir, mailboxes,
                                    settings.default_timezone, reps=reps)
    problems = all_problems(checked, problems)
    for problem in problems:
        typer.echo(str(problem))
    good = sum(1 for c in checked if c.sequence and not c.problems)
    bad = sum(1 for c in checked if c.problems)
    if not checked and not problems:
        out.print("[yellow]no sequence files found[/yellow]")
        raise typer.Exit(1)
    ok = f"{_plural(good, 'sequence')} OK"
    if problems:
        out.print(f"[red]{_plural(len(problems), 'problem')}[/red] in {bad} of "
                  f"{_plural(len(checked), 'file')}; {ok}")
        raise typer.Exit(1)
    note = "" if mailboxes else " (no mailboxes configured, so mailbox names were not checked)"
    out.print(f"[green]{ok}[/green]{note}")
    if reps is not None and not reps:
        out.print(f"[yellow]warning:[/yellow] {settings.config_path or 'settings'}: no reps "
                  "configured; a reply is handed off unassigned until a rep claims it "
                  "(nurture.yaml, reps:)")
    if settings.config_path is not None and not settings.postal_address:
        out.print(f"[yellow]warning:[/yellow] {settings.config_path}: postal_address is empty; "
                  "the law asks for it in every email's footer")


def preview(
    sequence: str = typer.Argument(..., metavar="SEQUENCE", help="The sequence's name."),
    step: str = typer.Argument(None, metavar="[STEP]", help="One step's name (default: every "
                                                              "step)."),
    lead: Path = LeadOption,
    set_: list[str] = SetOption,
    html: Path = typer.Option(None, "--html", help="Also write an HTML page to open in a "
                                                   "browser."),
    sequences: Path = SequencesOption,
    templates: Path = TemplatesOption,
    config: Path = ConfigOption,
) -> None:
    """Show the emails (subject and text) and task notes a lead would get."""
    out, p = console(), _prepare(config, sequence, sequences, templates, lead, set_)
    settings, seq, the_lead = p.settings, p.seq, p.lead
    touches = preview_touches(settings, p.catalog, seq, the_lead, datetime.now(UTC), None, [], 500)
    touches = _one_per_step(touches, seq.name)
    if step is not None:
        touches = [t for t in touches if t.entry.step == step]
        if not touches:
            names = ", ".join(s.name for s in seq.steps)
            raise NotFound(f"no step named '{step}' in '{seq.name}'; its steps are: {names}")
    sender = preview_sender(settings, seq)
    for touch in touches:
        out.print(_panel(touch, sender, the_lead))
    if html is not None:
        _write(html, html_page(f"Preview of {seq.name}", touches, sender, the_lead))
        out.print(f"wrote {html}")
    broken = [t for t in touches if t.error]
    if broken:  # as validate does: a script or CI job sees that this lead's emails fail
        out.print(f"[red]{len(broken)} of {len(touches)} touch(es) cannot be made for this "
                  "lead[/red] (shown above); the daemon would fail them")
        raise typer.Exit(1)


def simulate(
    sequence: str = typer.Argument(..., metavar="SEQUENCE", help="The sequence's name."),
    lead: Path = LeadOption,
    set_: list[str] = SetOption,
    start: str = typer.Option("now", "--start", help="Enrollment time, e.g. '2025-03-03 "
                              "09:00' (the lead's time zone unless an offset is given)."),
    reply_at: str = typer.Option(None, "--reply-at", help="When the lead replies: the "
                                 "timeline stops there."),
    stage: list[str] = typer.Option(None, "--stage", help="A stage change, STAGE@DATETIME, "
                                    "e.g. decision@2025-03-10 09:00. Repeatable."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many rows."),
    sequences: Path = SequencesOption,
    templates: Path = TemplatesOption,
    config: Path = ConfigOption,
) -> None:
    """Print the dated timeline a lead would get, and what a reply or stage change does."""
    out, p = console(), _prepare(config, sequence, sequences, templates, lead, set_)
    settings, catalog, seq, the_lead, zone = p.settings, p.catalog, p.seq, p.lead, p.zone
    now = datetime.now(UTC)
    started = _moment(start, "--start", lambda t: parse_moment(t, zone, now))
    replied = _moment(reply_at, "--reply-at", lambda t: parse_moment(t, zone, now))
    if replied is not None and replied < started:
        raise typer.BadParameter(f"the reply ({reply_at}) is before the enrollment (--start "
                                 f"{start}); give a later time", param_hint="--reply-at")
    changes = [_moment(s, "--stage", lambda t: parse_stage_change(t, zone, now))
               for s in stage or []]
    touches = preview_touches(settings, catalog, seq, the_lead, started, replied, changes, limit)
    out.print(_table(touches, f"{seq.name} for {the_lead.get('email')}"))
    out.print(_summary(touches, limit))


# --- helpers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Prepared:
    """What preview and simulate start from: the catalog, the sequence and the lead."""

    settings: Settings
    catalog: Catalog
    seq: Sequence
    lead: dict[str, Any]
    zone: ZoneInfo


def _prepare(config: Path | None, name: str, sequences: Path | None, templates: Path | None,
             lead_file: Path | None, sets: list[str] | None) -> _Prepared:
    settings = _settings(config)
    catalog, seq = _sequence(settings, name, sequences, templates)
    lead = lead_from_inputs(seq.sample_lead, lead_file, sets or [])
    if lead.get("email"):  # refused here exactly as `enroll` refuses it
        lead["email"] = normalise_email(str(lead["email"]))
    zone = seq.zone(lead.get("timezone"), settings.default_timezone)
    return _Prepared(settings, catalog, seq, lead, zone)


def _write(path: Path, text: str) -> None:
    """Write the page, creating its folder: asking for out/preview.html means that place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {path}: {exc.strerror or exc}",
                                 param_hint="--html") from None


def _settings(config: Path | None) -> Settings:
    return load_app(config).settings


def _sequence(settings: Settings, name: str, sequences: Path | None,
              templates: Path | None) -> tuple[Catalog, Sequence]:
    catalog = load_catalog(sequences or settings.sequences_dir,
                           templates or settings.templates_dir,
                           default_timezone=settings.default_timezone)
    seq = catalog.get(name)
    if seq.on_finish and seq.on_finish.enroll not in catalog.sequences:
        catalog.get(seq.on_finish.enroll)  # explains why the follow-on sequence is missing
    return catalog, seq


def _moment(text: str | None, option: str, parse: Any) -> Any:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def preview_sender(settings: Settings, seq: Sequence) -> dict[str, str]:
    """The mailbox's real name, address and signature when configured, else a sample."""
    sender = default_sample_sender()
    box = settings.mailboxes.get(seq.mailbox)
    if box is not None:
        sender.update(name=box.from_name or box.address, email=box.address,
                      signature=box.signature or box.from_name)
    if settings.postal_address:
        sender["postal_address"] = settings.postal_address
    return sender


def preview_touches(settings: Settings, catalog: Catalog, seq: Sequence, lead: dict[str, Any],
                    start: datetime, reply_at: datetime | None,
                    changes: list[tuple[datetime, str]], limit: int,
                    sender: dict[str, str] | None = None) -> list[Touch]:
    """The lead's timeline rendered as the daemon would send it (also `lead_check`);
    `sender`: the mailbox as templates see it (default: preview_sender)."""
    flat = lead_view(lead)  # `when:` reads custom fields by their plain names
    entries = simulate_timeline(catalog.sequences, seq.name, flat, start,
                                settings.default_timezone, reply_at, changes, limit)
    renderer = Renderer(catalog.templates_dir)
    url = f"{settings.base_url.rstrip('/')}/u/preview"
    return render_entries(entries, catalog.sequences, renderer, lead,
                          sender or preview_sender(settings, seq), url)


def _one_per_step(touches: list[Touch], name: str) -> list[Touch]:
    """The first enrollment's touches, each step once (a monthly step shows its first month)."""
    seen: set[int] = set()
    kept = []
    for touch in touches:
        if touch.entry.sequence != name:
            break
        if touch.entry.step_index not in seen:
            seen.add(touch.entry.step_index)
            kept.append(touch)
    return kept


def _panel(touch: Touch, sender: dict[str, str], lead: dict[str, Any]) -> Panel:
    e = touch.entry
    title = f"{e.step} · {e.channel} · {e.local:%a %d %b %H:%M} {e.zone}"
    body = Text()
    if e.status == "skipped":
        body.append(f"skipped for this lead: {e.reason}\n\n", style="yellow")
    if touch.error:
        body.append(touch.error, style="red")
    elif touch.email:
        body.append(f"From: {sender['name']} <{sender['email']}>\nTo: {lead.get('email')}\n")
        body.append("Subject: ").append(touch.email.subject, style="bold")
        body.append("\n\n" + touch.email.text.rstrip())
    else:
        body.append(f"{e.task_kind}: ", style="bold").append(touch.note or "")
    return Panel(body, title=title, title_align="left")


def _table(touches: list[Touch], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("#", "Local time", "UTC", "Sequence", "Step", "Channel"):
        table.add_column(column, no_wrap=True)
    table.add_column("Subject / task note", ratio=3, overflow="fold")
    table.add_column("Status", ratio=2, overflow="fold")
    styles = {"scheduled": "green", "skipped": "yellow", "stopped": "red"}
    for touch in touches:
        e = touch.entry
        status = e.status + (f": {e.reason}" if e.reason else "")
        table.add_row(
            str(e.touch_number or ""), f"{e.local:%a %Y-%m-%d %H:%M} {e.local:%Z}",
            f"{e.at:%Y-%m-%d %H:%M}", e.sequence, e.step, e.channel,
            Text(_clip(touch.summary) if e.status != "stopped" else "",
                 style="red" if touch.error else ""),
            Text(status, style=styles.get(e.status, "")),
        )
    return table


def _clip(text: str, limit: int = 90) -> str:
    """Task notes can be long; the table shows their start (preview shows all of it)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("ch") else "s")


def _summary(touches: list[Touch], limit: int) -> str:
    made = [t for t in touches if t.entry.status == "scheduled"]
    if not made:
        return "no touches"
    emails = sum(1 for t in made if t.entry.channel == "email")
    days = (made[-1].entry.at - made[0].entry.at).days
    text = (f"{_plural(len(made), 'touch')} ({_plural(emails, 'email')}, "
            f"{_plural(len(made) - emails, 'task')}) over {_plural(days, 'day')}")
    if len(touches) >= limit:
        text += f"; cut at {limit} rows (raise --limit to see more)"
    return text
