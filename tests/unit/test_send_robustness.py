"""The send pass under bad luck: mailbox pauses that never end, touches that cannot be made,
schedules that cannot be computed (fake sender, frozen clock, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from engine.domain.touch import MAX_DEFERRALS
from engine.errors import MailboxRejected
from engine.store.tables import Touch
from tests.servers.engine_env import Env, make_env

T = Touch.__table__


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def touch_row(env: Env) -> tuple[str, int, int]:
    """(state, deferrals, attempts) of the only touch."""
    with env.store.db.read() as conn:
        [row] = conn.execute(select(T.c.state, T.c.deferrals, T.c.attempts)).all()
    return tuple(row)  # type: ignore[return-value]


def test_mailbox_pauses_for_one_touch_are_capped(env: Env) -> None:
    """A relay that refuses 'the mailbox' for one touch every time: it pauses the mailbox
    and waits without using attempts, but after MAX_DEFERRALS pauses the touch fails with
    the reason, so it cannot hold the mailbox paused forever."""
    env.sender.fail = lambda _m: MailboxRejected("554 5.7.1 relay refused", 554, 900)
    env.enroll("ada@example.com")
    for n in range(1, MAX_DEFERRALS):
        env.run_once()
        assert touch_row(env) == ("claimed", n, 0)
        env.clock.advance(minutes=16)
    env.run_once()
    [touch] = env.touches()
    assert touch.state == "failed" and f"{MAX_DEFERRALS} times" in touch.error
    assert "554 5.7.1 relay refused" in touch.error
    assert env.store.reports.enrollments()[0]["stop_reason"] == "send_failed"
    assert env.store.leads.suppression("ada@example.com") is None
    assert len(env.sender.attempts) == MAX_DEFERRALS
