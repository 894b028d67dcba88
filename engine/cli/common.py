"""Helpers shared by the CLI modules: the config option and the App it builds."""

from __future__ import annotations

from pathlib import Path

import typer

from engine.app import App
from engine.settings import Settings

ConfigOption = typer.Option(
    None, "--config", "-c",
    help="Config file (default: $NURTURE_CONFIG, else ./nurture.yaml). Env: NURTURE_CONFIG.",
)


def load_app(config: Path | None) -> App:
    return App(Settings.load(config))
