"""The heartbeat task: it beats every interval even while a reap is slow (waiting on an
IMAP server for in-doubt touches), rides out a database that refuses a beat, and still stops
on a bug in the reaper (fake worker store and reaper, real asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from engine.daemon.heartbeat import Heartbeat
from engine.testing import FrozenClock
from tests.servers import polling


class Workers:
    def __init__(self, refuse: int = 0) -> None:
        self.beats, self.refuse = 0, refuse

    def heartbeat(self, name: str, now: Any, lease: timedelta) -> None:
        if self.refuse:
            self.refuse -= 1
            raise OperationalError("UPDATE worker", {}, Exception("server closed the connection"))
        self.beats += 1

    def workers(self) -> list[Any]:
        return []


class Reaper:
    def __init__(self, stuck: bool = False, bug: bool = False) -> None:
        self.stuck, self.bug, self.reaps = stuck, bug, 0
        self.release = asyncio.Event()

    async def reap(self, dead: Any) -> None:
        self.reaps += 1
        if self.bug:
            raise KeyError("a bug")
        if self.stuck:  # an IMAP server that does not answer, until the test says so
            await self.release.wait()


def run_until(workers: Workers, reaper: Reaper, beats: int) -> bool:
    """Run the heartbeat (interval 10 ms) until `beats` beats (True) or 10 s (False)."""
    async def go() -> bool:
        beat = Heartbeat(workers, reaper, FrozenClock(), "w1", 0.01,  # type: ignore[arg-type]
                         timedelta(seconds=60))
        stop = asyncio.Event()
        task = asyncio.create_task(beat.run(stop))
        with contextlib.suppress(AssertionError):  # the caller asserts on what came of it
            await polling.until(lambda: workers.beats >= beats or task.done(), 10)
        stop.set()
        reaper.release.set()
        await task
        return workers.beats >= beats
    return asyncio.run(go())


def test_a_stuck_reap_does_not_hold_back_the_beats() -> None:
    """A reap waiting on its IMAP server: the beats go on meanwhile, one reap at a time."""
    workers, reaper = Workers(), Reaper(stuck=True)
    assert run_until(workers, reaper, beats=5), f"{workers.beats} beats"
    assert reaper.reaps == 1


def test_a_refused_beat_is_tried_again_at_the_next_interval() -> None:
    assert run_until(Workers(refuse=3), Reaper(), beats=3)


def test_a_bug_in_the_reaper_stops_the_task() -> None:
    with pytest.raises(KeyError):
        run_until(Workers(), Reaper(bug=True), beats=1000)
