"""Recovery after a crash, when recovery itself is interrupted or raced, on SQLite and PostgreSQL.

Found by the SIGKILL test (test_crash_sigkill.py): a daemon killed while its reaper settled a
dead worker's in-doubt touches; and, with several workers, two reapers settling the same one.
Here the moments are placed by hand: a worker dies with a touch in `sending` (its sender
raises a BaseException, as a SIGKILL would stop it), then the reapers run.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.daemon.heartbeat import boot_id, dead_here
from engine.services.recover import Recovery
from engine.store.tables import Event
from engine.store.workers import WorkerStore
from tests.servers.engine_env import Env, make_env

DEAD = "host:dead:0001"
STALE = timedelta(seconds=30)


class Killed(BaseException):
    """The process ends here: nothing after this line of the send runs."""


class DiesMidSend:
    """A sender whose process is killed during the SMTP transaction."""

    async def send(self, mailbox: str, sender: str, recipient: str, raw: bytes) -> Any:
        raise Killed



def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def died_sending(tmp_path: Path, db_url: str) -> tuple[Env, int]:
    """A worker on this host (our pid namespace) died with one touch in `sending`; its pid
    is gone."""
    env = make_env(tmp_path, url=db_url, sender=DiesMidSend(), worker=DEAD)
    env.store.workers.register(DEAD, socket.gethostname(), _dead_pid(), env.clock.now(),
                               boot_id())
    env.enroll("ada@example.com")
    with pytest.raises(Killed):
        env.run_once()
    [touch] = env.touches()
    assert touch.state == "sending"
    return env, touch.id


def _reap(env: Env, recovery: Recovery | None = None) -> Any:
    dead = dead_here(env.store.workers.workers(), "host:restarted:0002")
    return asyncio.run((recovery or env.recovery).reap(dead))


def test_a_reaper_killed_before_settling_leaves_the_dead_worker_known(
    died_sending: tuple[Env, int],
) -> None:
    """The restarted daemon's reaper reads the dead worker's in-doubt touch and is killed
    before settling it: the next restart still knows that worker is dead and settles the
    touch at once (held `unknown`), rather than after the 60 s lease."""
    env, touch_id = died_sending
    dead = dead_here(env.store.workers.workers(), "host:restarted:0002")
    _, doubts = env.store.workers.reap(env.clock.now(), env.clock.now() - STALE, dead)
    assert [d.claim.touch_id for d in doubts] == [touch_id]  # ... and the reaper dies here
    assert dead_here(env.store.workers.workers(), "host:again:0003") == [DEAD]
    assert _reap(env).held == [touch_id]
    assert env.touches()[0].state == "unknown"
    _reap(env)
    assert env.store.workers.workers() == []  # nothing left to settle: the row goes


class _RacedWorkers:
    """The real WorkerStore, except that another reaper settles the in-doubt touches between
    this reaper's read and its settle (two workers reaping the same dead one)."""

    def __init__(self, store: WorkerStore, other: Recovery) -> None:
        self.store, self.other = store, other

    def reap(self, now: Any, alive_since: Any, dead: Collection[str] = ()) -> Any:
        found = self.store.reap(now, alive_since, dead)
        asyncio.run(self.other.reap(dead))  # we run in a thread of our own (to_thread)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_two_reapers_settling_one_in_doubt_touch_do_not_crash(
    died_sending: tuple[Env, int],
) -> None:
    """The second reaper finds the touch settled already: its decision stands, the second
    reaper carries on (its heartbeat task must not die and take the daemon down)."""
    env, touch_id = died_sending
    raced = Recovery(_RacedWorkers(env.store.workers, env.recovery), env.catalog,  # type: ignore[arg-type]
                     env.clock, "UTC", STALE, env.sent_copy)
    report = _reap(env, raced)
    assert report.held == [] and env.touches()[0].state == "unknown"
    with env.store.db.read() as conn:
        settled = conn.execute(select(func.count()).select_from(Event.__table__).where(
            Event.__table__.c.kind == "touch_in_doubt")).scalar()
    assert settled == 1
