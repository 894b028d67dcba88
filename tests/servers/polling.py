"""Waiting for what the test cannot be signalled about (another process's rows, a watcher's
status): poll until the condition holds, never a fixed sleep. Each wait ends as soon as its
condition holds; the timeout is only an upper bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def holds_within(condition: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """The condition's first truthy value, or its last falsy one after `timeout` seconds (for
    `assert holds_within(...), detail`)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            return value
        time.sleep(every)
    return value


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               every: float = 0.02) -> Any:
    """The condition's first truthy value; AssertionError naming `what` after `timeout`."""
    value = holds_within(condition, timeout, every)
    if not value:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


async def until(condition: Callable[[], Any], timeout: float, what: str = "the condition",
                every: float = 0.02) -> Any:
    """wait_until from a coroutine: the condition runs in a thread (it may query a database)
    and the event loop keeps serving the daemon under test meanwhile."""
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(condition)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)
    return value
