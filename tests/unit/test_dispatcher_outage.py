"""The dispatcher waits out a database that fails (a restart, a lost connection) and stops
on a bug (an IntegrityError is not an outage): a fake pass, real asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.daemon import dispatcher as dispatcher_module
from engine.daemon.dispatcher import Dispatcher
from engine.services.send_due import PassReport
from engine.testing import FrozenClock
from tests.servers import polling


class Passes:
    """run_pass raises `errors` in turn, then reports nothing due."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls, self.stopping = list(errors), 0, False

    async def run_pass(self) -> PassReport:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return PassReport()


def run(passes: Passes, until_calls: int) -> None:
    async def go() -> None:
        d = Dispatcher(passes, FrozenClock(), idle_poll=0.01)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        await polling.until(lambda: passes.calls >= until_calls or task.done(), 10,
                            f"{until_calls} passes")
        stop.set()
        await task
    asyncio.run(go())


def test_a_failing_database_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "OUTAGE_WAITS", (0.01,))
    lost = OperationalError("SELECT", {}, Exception("server closed the connection"))
    passes = Passes(lost, lost)
    run(passes, until_calls=4)
    assert passes.calls >= 4  # two failed passes, then passes that work


def test_a_bug_stops_the_dispatcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "OUTAGE_WAITS", (0.01,))
    bug: Any = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    with pytest.raises(IntegrityError):
        run(Passes(bug), until_calls=10)
