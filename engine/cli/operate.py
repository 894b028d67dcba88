"""CLI commands (placeholder until its owner fills it)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
