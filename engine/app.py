"""The composition root: builds the adapters from Settings and hands them to the services.

Entry points (cli/, web/, daemon/) make one App and ask it for what they need; nothing
below this module reads Settings from anywhere else.
"""

from __future__ import annotations

from functools import cached_property

from engine.settings import Settings


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
