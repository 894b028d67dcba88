"""Send windows hold when a touch actually leaves, not only when its due time was computed:
retries, deferrals over a mailbox pause, a backlog after an outage (or a cron-hosted
`run --once`) and the end of an out-of-office pause all wait for the window's opening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.domain.lead import LeadRecord
from engine.errors import MailboxQuotaExhausted, TransientSendError
from engine.services.handle_inbound import resume_at
from engine.store.tables import Touch
from tests.servers.engine_env import Env, make_env, sequence

WINDOW = {"days": "mon-fri", "hours": "09:00-17:00"}
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
TUESDAY_OPEN = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
T = Touch.__table__


def windowed(tmp_path: Path, after: str = "0m", jitter: str = "0m") -> Env:
    """One email step, sent Monday-Friday 09:00-17:00 UTC."""
    steps = [{"name": "hello", "after": after, "send_window": WINDOW,
              "email": {"template": "hello.md.j2"}}]
    return make_env(tmp_path, [sequence(steps=steps, jitter=jitter)])


def sent_at(env: Env) -> list[datetime]:
    return [t.sent_at for t in env.touches() if t.sent_at is not None]


def test_a_retry_that_falls_after_the_window_waits_for_the_next_opening(tmp_path: Path) -> None:
    """451 at 16:59, backoff one minute: at 17:00 the window is closed, so the retry goes
    out Tuesday 09:00 (same bytes), not in the evening."""
    env = windowed(tmp_path)
    env.clock.set(MONDAY.replace(hour=16, minute=59))
    failures = [TransientSendError("451 4.3.0 later", 451)]
    env.sender.fail = lambda _m: failures.pop() if failures else None
    env.enroll("ada@example.com")
    assert env.run_once()["retry"] == 1
    env.clock.set(MONDAY.replace(hour=17, minute=0))
    assert env.run_once()["defer"] == 1 and env.sender.sent == []
    env.clock.set(TUESDAY_OPEN - timedelta(seconds=1))
    env.run_once()
    assert env.sender.sent == []
    env.clock.set(TUESDAY_OPEN)
    env.run_once()
    assert sent_at(env) == [TUESDAY_OPEN]
    first, second = env.sender.attempts
    assert first.raw == second.raw


def test_a_touch_deferred_over_a_mailbox_pause_waits_for_the_window(tmp_path: Path) -> None:
    """The mailbox is paused an hour at 16:30; when the pause ends (17:30) the window is
    closed: the touch leaves at Tuesday's opening."""
    env = windowed(tmp_path)
    env.clock.set(MONDAY.replace(hour=16, minute=30))
    failures = [MailboxQuotaExhausted("452 4.5.3 daily quota", 452, retry_after=3600)]
    env.sender.fail = lambda _m: failures.pop() if failures else None
    env.enroll("ada@example.com")
    env.run_once()
    env.clock.set(MONDAY.replace(hour=17, minute=30))
    env.run_once()
    assert env.sender.sent == []
    env.clock.set(TUESDAY_OPEN)
    env.run_once()
    assert sent_at(env) == [TUESDAY_OPEN]


def test_a_backlog_found_at_night_leaves_when_the_window_opens(tmp_path: Path) -> None:
    """Due Monday 10:00, but the daemon (or a cron-hosted `run --once`) only runs Tuesday at
    03:00: nothing leaves at 03:00; each touch waits for 09:00 plus its own jitter."""
    env = windowed(tmp_path, after="1h", jitter="10m")
    env.clock.set(MONDAY.replace(hour=9))
    for i in range(5):
        env.enroll(f"lead{i}@example.com")
    env.clock.set(datetime(2026, 3, 3, 3, 0, tzinfo=UTC))
    assert env.run_once()["defer"] == 5 and env.sender.sent == []
    with env.store.db.read() as conn:
        waits = sorted(conn.execute(select(T.c.retry_at)).scalars())
    assert len(set(waits)) > 1  # spread, not all at 09:00:00
    assert all(TUESDAY_OPEN <= w < TUESDAY_OPEN + timedelta(minutes=10) for w in waits)
    env.clock.set(waits[0])
    env.run_once()
    assert sent_at(env) == [waits[0]]
    env.clock.set(TUESDAY_OPEN + timedelta(minutes=10))
    env.run_once()
    assert len(env.sender.sent) == 5


def test_a_step_without_a_window_is_sent_at_any_hour(tmp_path: Path) -> None:
    """`send_window: any` is never deferred: a 03:00 backlog of it leaves at 03:00."""
    env = make_env(tmp_path)  # both steps of the default sequence say `any`
    env.clock.set(datetime(2026, 3, 3, 3, 0, tzinfo=UTC))
    env.enroll("ada@example.com")
    assert env.run_once()["sent"] == 1


def test_an_out_of_office_pause_ends_inside_the_window() -> None:
    """No return date, an auto-reply Monday 23:30 in New York, window 08:30-17:30: 3 business
    days later is Thursday 23:30, so the pause ends at the next opening, Friday 08:30 New
    York time (the step that fell due meanwhile is claimed then, not at 23:30)."""
    ny = ZoneInfo("America/New_York")
    seq = sequence(timezone="America/New_York",
                   send_window={"days": "mon-fri", "hours": "08:30-17:30"})
    lead = LeadRecord(1, "ada@example.com")
    arrived = datetime(2026, 3, 2, 23, 30, tzinfo=ny)
    until = resume_at(None, seq, lead, arrived.astimezone(UTC), "UTC")
    assert until.astimezone(ny) == datetime(2026, 3, 6, 8, 30, tzinfo=ny)
