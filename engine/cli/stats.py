"""`nurture stats`: the marketer's per-sequence, per-step numbers in the terminal (or JSON),
counted by the same store code as the /stats page (engine/store/stats.py)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import typer
from rich.table import Table

from engine.cli.common import ConfigOption, console, load_app
from engine.errors import UnknownSequence
from engine.store.stats import Counts, SequenceStats, step_names

COLUMNS = ("enrolled", "sent", "tasks done", "replied", "auto-replied", "bounced", "failed",
           "unsubscribed", "reply rate", "median to touch")


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command("stats")(stats)


def stats(
    sequence: str = typer.Argument(None, help="Only this sequence (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts: the same shape as "
                                                       "GET /stats with Accept: JSON."),
    config: Path = ConfigOption,
) -> None:
    """Per sequence and step: enrolled, sent, tasks done, replied, auto-replied, bounced,
    failed, unsubscribed, reply rate, median time from enrollment to the touch."""
    app = load_app(config, schema=True)
    data = app.store.stats.sequences(step_names(app.catalog.sequences))
    if sequence is not None:
        data = _only(data, sequence)
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in data], indent=2))
        return
    out = console()
    if not data:
        out.print("no sequences and no enrollments yet")
    for s in data:
        out.print(_table(s))
    out.print("Replies, auto-replies and bounces count against the email they answered; an "
              "unsubscribe against the last email before it. Bounced: refused by the "
              "recipient's server (5xx) or a bounce report; failed: not sent for another "
              "reason (see `nurture lead EMAIL`). Reply rate: replies per lead "
              "reached. Median to touch: from enrollment to the first email (on a step: to "
              "that step).", style="dim")


def _only(data: list[SequenceStats], name: str) -> list[SequenceStats]:
    found = [s for s in data if s.totals.name == name]
    if found:
        return found
    known = [s.totals.name for s in data]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownSequence(f"no sequence named '{name}' (loaded or with enrollments); {hint}"
                          f"known: {', '.join(known) or 'none'}")


def _table(s: SequenceStats) -> Table:
    table = Table("step", *COLUMNS, title=s.totals.name, title_justify="left")
    for column in table.columns[1:]:
        column.justify = "right"
    table.add_row("all steps", *_cells(s.totals), style="bold")
    for i, c in enumerate(s.steps, start=1):
        table.add_row(f"{i}. {c.name}", *_cells(c))
    return table


def _cells(c: Counts) -> list[str]:
    from engine.web.render import percent, span  # the page's formatting, so both read alike

    return [str(c.enrolled), str(c.sent), str(c.tasks_done), str(c.replied), str(c.auto_replied),
            str(c.bounced), str(c.failed), str(c.unsubscribed), percent(c.reply_rate),
            span(c.median_to_touch)]
