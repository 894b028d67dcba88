"""The rep's commands: `nurture handoffs` (the list) and `nurture handoff show|claim|close|
resume ID`. Thin: the moves are services/handoff.py, shared with the rep pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from engine.app import App
from engine.cli.common import ConfigOption, console, load_app, print_lead

handoff_app = typer.Typer(help="One handoff: show it, claim it, close it, or put the lead "
                               "back into nurture.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("handoffs")(handoffs)
    app.add_typer(handoff_app, name="handoff")



def _app(config: Path | None) -> App:
    return load_app(config, schema=True)


def _ago(at: datetime | None) -> str:
    if at is None:
        return "-"
    secs = int((datetime.now(UTC) - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit} ago"
    return "just now"


def _state(h: Any) -> str:
    if h.state == "closed":
        return f"closed ({h.outcome.replace('_', ' ')})"
    return str(h.state)


# --- the list ------------------------------------------------------------------------------

def handoffs(
    state: str = typer.Option(None, "--state", help="Only handoffs in this state: open, "
                                                    "claimed or closed."),
    rep: str = typer.Option(None, "--rep", help="Only this rep's handoffs."),
    config: Path = ConfigOption,
) -> None:
    """Leads who replied and were handed to a rep, newest first."""
    rows = _app(config).handoffs().list(state, rep)
    table = Table("id", "lead", "company", "sequence", "rep", "state", "replied")
    for h in rows:
        table.add_row(str(h.id), f"{h.name} <{h.email}>" if h.name else h.email, h.company,
                      h.sequence or "-", h.rep or "[yellow]unassigned[/yellow]", _state(h),
                      _ago(h.created_at))
    out = console()
    out.print(table if table.row_count else f"no {state + ' ' if state else ''}handoffs")
    for h in rows:  # why a reply waits for nobody in particular (set when it was handed off)
        if h.state == "open" and not h.rep and h.note:
            out.print(f"[yellow]handoff {h.id}[/yellow]: {h.note}; any rep can claim it: "
                      f"nurture handoff claim {h.id} --rep NAME")


# --- one handoff ---------------------------------------------------------------------------

IdArgument = typer.Argument(..., metavar="ID", help="The handoff's number (`nurture handoffs`).")


@handoff_app.command("show")
def show(handoff_id: int = IdArgument, config: Path = ConfigOption) -> None:
    """The handoff: the lead, what they wrote, the whole thread and the timeline."""
    d = _app(config).handoffs().show(handoff_id)
    out, h, lead = console(), d.handoff, d.lead
    out.print(f"[bold]handoff {h.id}[/bold]: {_state(h)}, rep {h.rep or '-'}, "
              f"sequence {h.sequence or '-'}, replied {h.created_at:%Y-%m-%d %H:%M} UTC")
    print_lead(out, lead, d.suppressed)
    for e in d.enrollments:
        why = f" ({e['stop_reason']})" if e["stop_reason"] else ""
        out.print(f"enrollment {e['id']}: {e['sequence']} {e['state']}{why}, "
                  f"{e['touch_number']} touches")
    if d.reply is not None:
        out.print(f"\n[bold]they wrote[/bold] ({d.reply.subject}):")
        out.print(d.reply.new_text or "(no text of their own)")
    thread = Table("when", "", "subject", "text", title="\nthread")
    for m in d.thread:
        thread.add_row(f"{m.at:%Y-%m-%d %H:%M}", "<-" if m.direction == "in" else "->",
                       m.subject, _short(m.text))
    out.print(thread)
    timeline = Table("when", "what", "details", title="timeline")
    for t in d.timeline:
        details = ", ".join(f"{k}={v}" for k, v in t.data.items() if v not in ("", None, []))
        timeline.add_row(f"{t.at:%Y-%m-%d %H:%M:%S}", t.kind, details)
    out.print(timeline)


def _short(text: str, size: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 3] + "..."


@handoff_app.command("claim")
def claim(handoff_id: int = IdArgument,
          rep: str = typer.Option(..., "--rep", help="The rep taking the lead over."),
          config: Path = ConfigOption) -> None:
    """Take the lead over (open -> claimed)."""
    h = _app(config).handoffs().claim(handoff_id, rep)
    console().print(f"handoff {h.id} is claimed by {h.rep}")


@handoff_app.command("close")
def close(handoff_id: int = IdArgument,
          outcome: str = typer.Option(..., "--outcome", help="won, lost or not-now."),
          note: str = typer.Option("", "--note", help="A line for the record."),
          by: str = typer.Option("", "--by", help="Who closes it (a rep's name)."),
          config: Path = ConfigOption) -> None:
    """Close the handoff with its outcome."""
    h = _app(config).handoffs().close(handoff_id, outcome, note, by)
    console().print(f"handoff {h.id} is closed: {h.outcome.replace('_', ' ')}")


@handoff_app.command("resume")
def resume(handoff_id: int = IdArgument,
           sequence: str = typer.Option(..., "--sequence", help="The nurture sequence to "
                                                                "enroll the lead in, e.g. ripen."),
           by: str = typer.Option("", "--by", help="Who decides it (a rep's name)."),
           config: Path = ConfigOption) -> None:
    """Put the lead back into nurture: close as renurtured and enroll them in SEQUENCE."""
    h, enrollment_id = _app(config).handoffs().resume(handoff_id, sequence, by)
    console().print(f"handoff {h.id} is closed (renurtured); {h.email} is enrolled in {sequence} "
                 f"(enrollment {enrollment_id})")
