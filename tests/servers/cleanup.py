"""What a test opened through a shared helper (make_env, make_app, a page client) is closed
when the test ends (tests/conftest.py): no database connection or socket outlives its test."""

from __future__ import annotations

from collections.abc import Callable

_opened: list[Callable[[], None]] = []


def close_after_test(close: Callable[[], None]) -> None:
    """Run `close` when the current test ends (last opened, first closed)."""
    _opened.append(close)


def close_all() -> None:
    while _opened:
        _opened.pop()()
