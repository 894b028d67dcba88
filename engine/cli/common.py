"""Helpers shared by the CLI modules: the config option and the App it builds."""

from __future__ import annotations

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


def load_app(config: Path | None, schema: bool = False) -> App:
    """The App of this command, closed (its database connections) when the command ends;
    `schema`: refuse a database whose schema is not this version's (one-line error)."""
    app = App(Settings.load(config))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(app.close)
    if schema:
        app.store.db.check_schema()
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
