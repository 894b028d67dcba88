"""The send pass under bad luck: mailbox pauses that never end, touches that cannot be made,
schedules that cannot be computed (fake sender, frozen clock, real SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from engine.domain.touch import MAX_DEFERRALS
from engine.errors import MailboxRejected, TransientSendError
from engine.store.tables import Touch
from engine.testing import FrozenClock
from tests.servers.engine_env import Env, make_env, sequence

T = Touch.__table__


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def touch_row(env: Env, touch_id: int = 1) -> tuple[str, int, int]:
    """(state, deferrals, attempts) of one touch."""
    with env.store.db.read() as conn:
        [row] = conn.execute(select(T.c.state, T.c.deferrals, T.c.attempts)
                             .where(T.c.id == touch_id)).all()
    return tuple(row)  # type: ignore[return-value]


def states(env: Env) -> list[str]:
    return [t.state for t in env.touches()]


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


RESOURCE_HOGS = {
    "memory": ("{{ 'x' * (2**62) }}", "more memory"),
    "recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself"),
}


@pytest.mark.parametrize("hog", sorted(RESOURCE_HOGS))
def test_a_template_that_exhausts_resources_fails_only_its_touch(
    tmp_path: Path, hog: str
) -> None:
    """MemoryError / RecursionError in a template: that touch fails with a sentence, the
    pass goes on and the other lead's touch (another template) is sent."""
    body, words = RESOURCE_HOGS[hog]
    two = sequence("other", steps=[{"name": "fine", "after": "0m", "send_window": "any",
                                    "email": {"template": "again.md.j2"}}])
    env = make_env(tmp_path, [sequence(), two], templates={
        "hello.md.j2": f"---\nsubject: Hi\n---\n{body}\n"})
    env.enroll("ada@example.com")
    env.enroll("bob@example.com", seq="other")
    counts = env.run_once()
    assert (counts["fail"], counts["sent"]) == (1, 1)
    failed = next(t for t in env.touches() if t.state == "failed")
    assert words in failed.error and "hello.md.j2" in failed.error
    assert [m.recipient for m in env.sender.sent] == ["bob@example.com"]


def test_a_next_step_out_of_range_after_a_250_records_the_send(tmp_path: Path) -> None:
    """The 250 came, then the next step's time overflows: the touch is recorded sent (not
    left in doubt), the enrollment stops with the reason, the pass goes on.

    The step after next is timeable when the message is made and no longer when the 250
    arrives: the (fake) relay takes two days, so the overflow happens after the send."""
    last = (datetime.max.replace(tzinfo=UTC) - FrozenClock().now()).days - 1
    steps = [{"name": "first", "after": "0m", "send_window": "any",
              "email": {"template": "hello.md.j2"}},
             {"name": "edge", "after": f"{last} days", "send_window": "any",
              "email": {"template": "again.md.j2"}}]
    other = sequence("other", steps=[{"name": "fine", "after": "0m", "send_window": "any",
                                      "email": {"template": "again.md.j2"}}])
    env = make_env(tmp_path, [sequence(steps=steps), other])
    env.enroll("ada@example.com")
    env.enroll("bob@example.com", seq="other")
    env.sender.fail = lambda _m: env.clock.advance(days=2) and None  # a slow relay
    counts = env.run_once()
    assert counts["sent"] == 2 and states(env) == ["sent", "sent"]
    rows = {e["sequence"]: e for e in env.store.reports.enrollments()}
    assert (rows["welcome"]["state"], rows["welcome"]["stop_reason"]) == (
        "stopped", "schedule_error")
    assert rows["other"]["state"] == "finished"
    assert env.run_once()["claimed"] == 0  # nothing left claimed or due: no crash loop


def test_a_skipped_step_whose_next_time_overflows_fails_that_touch(tmp_path: Path) -> None:
    """`when:` false and the following step cannot be timed: failed with the reason."""
    steps = [{"name": "pro-only", "after": "0m", "send_window": "any", "when": {"plan": "pro"},
              "email": {"template": "hello.md.j2"}},
             {"name": "never", "after": "99999999 days", "send_window": "any",
              "email": {"template": "again.md.j2"}}]
    env = make_env(tmp_path, [sequence(steps=steps)])
    env.enroll("ada@example.com", plan="free")
    env.run_once()
    [touch] = env.touches()
    assert touch.state == "failed" and "cannot be made" in touch.error
    assert env.store.reports.enrollments()[0]["stop_reason"] == "touch_failed"


def break_begin(monkeypatch: pytest.MonkeyPatch, queue: Any, touch_id: int) -> list[bool]:
    """The real queue, except beginning one touch fails (a database hiccup) until healed:
    set the returned flag's [0] to True."""
    real, healed = queue._begin_in, [False]

    def begin_in(conn: Any, claim: Any, *args: Any, **kwargs: Any) -> Any:
        if claim.touch_id == touch_id and not healed[0]:
            raise OperationalError("UPDATE touch", {}, Exception("database is locked"))
        return real(conn, claim, *args, **kwargs)

    monkeypatch.setattr(queue, "_begin_in", begin_in)
    return healed


def test_an_unexpected_error_is_logged_and_the_touch_retried_later(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is not the touch's fault: touch_error, the pass goes on (the touch
    begun in the same transaction goes out), the touch is given back with a backoff (an
    attempt used) and sent by a later pass."""
    env.enroll("ada@example.com")
    env.enroll("bob@example.com")
    healed = break_begin(monkeypatch, env.store.queue, touch_id=1)
    with capture_logs() as logs:
        counts = env.run_once()
    assert (counts["error"], counts["sent"]) == (1, 1)
    [error] = [e for e in logs if e["event"] == "touch_error"]
    assert error["touch_id"] == 1 and "database is locked" in error["reason"]
    assert touch_row(env, 1) == ("claimed", 0, 1)
    healed[0] = True
    env.clock.advance(minutes=1)
    assert env.run_once()["sent"] == 1
    assert sorted(m.recipient for m in env.sender.sent) == ["ada@example.com",
                                                            "bob@example.com"]


def test_a_begin_that_committed_but_raised_is_due_again_not_stuck_sending(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The begin's commit reached the disk but its caller got an error (a connection lost
    at COMMIT): the touch is `sending` and never went to SMTP. It is put back to wait for a
    retry (it used to stay `sending`, its lease renewed, until a restart made it in doubt),
    and a later pass sends it once."""
    env.enroll("ada@example.com")
    real, raised = env.store.queue.send_writes, [False]

    def committed_then_raised(items: Any, *args: Any, **kwargs: Any) -> Any:
        results = real(items, *args, **kwargs)
        if not raised[0]:
            raised[0] = True
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return results

    monkeypatch.setattr(env.store.queue, "send_writes", committed_then_raised)
    assert env.run_once()["error"] == 1
    assert touch_row(env) == ("claimed", 0, 1)
    assert env.sender.sent == []
    env.clock.advance(minutes=1)
    assert env.run_once()["sent"] == 1
    assert [m.recipient for m in env.sender.sent] == ["ada@example.com"]


def test_a_pass_whose_claim_fails_midway_strands_nothing(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ada's touch waits for a retry (a 451), Bob's is due; the pass claims Ada's retry, then
    the due claim fails (the database went away). Ada's claim is handed back, not held until
    a restart: the next pass sends both (it used to send Bob only)."""
    env.sender.fail = lambda m: (TransientSendError("451 4.3.0 try later", 451)
                                 if not env.sender.attempts[:-1] else None)
    env.enroll("ada@example.com")
    assert env.run_once()["retry"] == 1
    env.clock.advance(minutes=1)
    env.enroll("bob@example.com")
    real, failed = env.store.queue.claim_due, [False]

    def claim_due(*args: Any, **kwargs: Any) -> Any:
        if not failed[0]:
            failed[0] = True
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(env.store.queue, "claim_due", claim_due)
    with pytest.raises(OperationalError):
        env.run_once()
    assert env.run_once()["sent"] == 2
    assert sorted(m.recipient for m in env.sender.sent) == ["ada@example.com",
                                                            "bob@example.com"]
