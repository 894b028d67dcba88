"""Helpers shared by the CLI modules: the config option and the App it builds."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console

from engine.app import App
from engine.settings import Settings

ConfigOption = typer.Option(
    None, "--config", "-c",
    help="Config file (default: $NURTURE_CONFIG, else ./nurture.yaml). Env: NURTURE_CONFIG.",
)


PIPED_WIDTH = 160  # a file or a CI log has no width: wide enough that no column is cut


def console() -> Console:
    """A console made per command, so it sees the terminal width (COLUMNS) of this run; piped
    or redirected, Rich would cut tables at 80 columns (`simulate | cat` lost its Status
    column): then PIPED_WIDTH, unless COLUMNS says otherwise."""
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(highlight=False, width=PIPED_WIDTH if piped else None)


def load_app(config: Path | None, schema: bool = False) -> App:
    """The App of this command, closed (its database connections) when the command ends;
    `schema`: refuse a database whose schema is not this version's (one-line error)."""
    app = App(Settings.load(config))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(app.close)
    if schema:
        app.check_schema()
    return app


def print_lead(out: Console, lead: Any, suppressed: str | None) -> None:
    """The lead's header, as `nurture lead` and `nurture handoff show` print it."""
    out.print(f"[bold]{lead.email}[/bold] {lead.name} {lead.company} "
              f"stage={lead.stage or '-'} timezone={lead.timezone or '-'} "
              f"owner={lead.owner or '-'} source={lead.source or '-'}")
    if lead.fields:
        out.print("fields: " + ", ".join(f"{k}={v}" for k, v in lead.fields.items()))
    if suppressed:
        out.print(f"[red]suppressed[/red] ({suppressed})")
