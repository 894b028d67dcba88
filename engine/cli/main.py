"""The `nurture` command: one Typer app; each command group lives in its own module.

This is an entry point: it turns NurtureError into a clear message and an exit code, never
a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from engine.cli import authoring, demo, handoffs, operate, stats
from engine.errors import NurtureError

app = typer.Typer(
    name="nurture",
    help="Email nurture sequences: author, validate, simulate, send, watch replies, hand off.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (authoring, operate, handoffs, stats, demo):
    module.register(app)

err = Console(stderr=True)


@app.command()
def version() -> None:
    """Print nurture's version."""
    from engine import __version__

    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except NurtureError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(1)
