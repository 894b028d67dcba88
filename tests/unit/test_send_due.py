"""The send service with a fake sender and a frozen clock (real SQLite, no sockets)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from engine.domain.touch import MAX_ATTEMPTS
from engine.errors import (
    InvalidTransition,
    MailboxQuotaExhausted,
    PermanentSendError,
    RecipientRejected,
    TransientSendError,
)
from engine.store.tables import Enrollment, Lead
from engine.testing import FakeReply, FakeSender, SentMessage
from tests.servers.engine_env import Env, mailbox, make_env, sequence

E = Enrollment.__table__


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def states(env: Env) -> list[str]:
    return [t.state for t in env.touches()]


def test_the_first_touch_goes_out_and_the_next_is_scheduled(env: Env) -> None:
    """Enroll, one pass: the email leaves; the next step is due a day later."""
    env.enroll("ada@example.com", first_name="Ada")
    assert env.run_once()["sent"] == 1
    [msg] = env.sender.sent
    assert msg.recipient == "ada@example.com" and msg.sender == "sales@acme.test"
    assert msg.message["Subject"] == "Hello Ada"
    [e] = env.store.reports.enrollments()
    assert (e["step_index"], e["next_due_at"]) == (1, env.clock.now() + timedelta(days=1))


def test_the_recorded_message_id_is_the_one_sent(env: Env) -> None:
    """The Message-ID in the touch table is the one in the message."""
    env.enroll("ada@example.com")
    env.run_once()
    assert env.touches()[0].message_id == env.sender.sent[0].message_id


def test_nothing_is_sent_before_it_is_due(env: Env) -> None:
    """The second step waits for its day."""
    env.enroll("ada@example.com")
    env.run_once()
    env.clock.advance(hours=23)
    assert env.run_once()["sent"] == 0
    env.clock.advance(hours=1)
    assert env.run_once()["sent"] == 1


def test_a_threaded_follow_up_replies_to_the_previous_email(env: Env) -> None:
    """`thread: previous`: Re: subject, In-Reply-To and References the first message."""
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    env.clock.advance(days=1)
    env.run_once()
    first, second = (m.message for m in env.sender.sent)
    assert second["Subject"] == "Re: Hello Ada"
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]


def test_a_step_whose_condition_fails_is_skipped(tmp_path: Path) -> None:
    """`when:` false for the lead: skipped, and the following step is scheduled."""
    steps = [
        {"name": "pro-only", "after": "0m", "send_window": "any", "when": {"plan": "pro"},
         "email": {"template": "hello.md.j2"}},
        {"name": "everyone", "after": "1h", "send_window": "any",
         "email": {"template": "again.md.j2"}},
    ]
    env = make_env(tmp_path, [sequence(steps=steps)])
    env.enroll("ada@example.com", plan="free")
    assert env.run_once()["skip"] == 1
    assert env.sender.sent == [] and states(env) == ["skipped"]
    env.clock.advance(hours=1)
    env.run_once()
    assert [m.message["Subject"] for m in env.sender.sent] == ["Second note"]


def test_a_task_step_waits_for_the_rep(tmp_path: Path) -> None:
    """A manual step opens a task; marking it done schedules the next step from then."""
    steps = [
        {"name": "call", "after": "0m", "send_window": "any",
         "task": {"kind": "call", "note": "Call {{ lead.first_name }}"}},
        {"name": "after-call", "after": "2h", "send_window": "any",
         "email": {"template": "again.md.j2"}},
    ]
    env = make_env(tmp_path, [sequence(steps=steps)])
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    [task] = env.store.reports.open_tasks()
    assert task.body_text == "Call Ada" and task.task_kind == "call"
    env.clock.advance(hours=5)
    assert env.run_once()["sent"] == 0  # nothing while the task is open
    env.tasks.complete(task.id, "sam")
    assert env.store.reports.enrollments()[0]["next_due_at"] == env.clock.now() + timedelta(hours=2)
    with pytest.raises(InvalidTransition):
        env.tasks.complete(task.id, "sam")


def test_stopping_between_claim_and_send_sends_nothing(env: Env) -> None:
    """The race: the enrollment stops after the claim; begin_send re-checks and skips."""
    env.enroll("ada@example.com")
    claims = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), 10,
                                       timedelta(seconds=60), env.send._planner("sales"))
    with env.store.db.write() as conn:
        conn.execute(update(E).values(state="handed_off"))

    async def go() -> None:
        from engine.services.send_due import PassReport
        await env.send.process(claims[0], PassReport())
    asyncio.run(go())
    assert env.sender.attempts == [] and states(env) == ["skipped"]


def test_a_transient_failure_is_retried_with_the_same_bytes(env: Env) -> None:
    """451: retried after a backoff with the same Message-ID and bytes, delivered once."""
    failures = [TransientSendError("451 4.3.0 later", 451)]
    env.sender.fail = lambda _m: failures.pop() if failures else None
    env.enroll("ada@example.com")
    assert env.run_once()["retry"] == 1
    assert env.run_once()["sent"] == 0  # not before the backoff
    env.clock.advance(minutes=1)
    assert env.run_once()["sent"] == 1
    first, second = env.sender.attempts
    assert first.raw == second.raw and len(env.sender.sent) == 1
    assert env.touches()[0].attempts == 2


def test_a_touch_is_given_up_after_its_attempts(env: Env) -> None:
    """Transient failures every time: failed after MAX_ATTEMPTS, enrollment stopped."""
    env.sender.fail = lambda _m: TransientSendError("451 later", 451)
    env.enroll("ada@example.com")
    for _ in range(MAX_ATTEMPTS):
        env.run_once()
        env.clock.advance(hours=1)
    assert states(env) == ["failed"] and len(env.sender.attempts) == MAX_ATTEMPTS
    assert env.store.reports.enrollments()[0]["stop_reason"] == "send_failed"


def test_a_rejected_recipient_is_suppressed(env: Env) -> None:
    """550 5.1.1 at RCPT: touch failed, address suppressed, every enrollment stopped."""
    env.sender.fail = lambda _m: RecipientRejected("550 5.1.1 user unknown", 550)
    env.enroll("ada@example.com")
    assert env.run_once()["failed"] == 1
    assert env.store.leads.suppression("ada@example.com") == "hard_bounce"
    assert env.store.reports.enrollments()[0]["stop_reason"] == "bounced"


def test_a_refused_message_is_failed_but_not_suppressed(env: Env) -> None:
    """A 5xx for the content (not the address) fails the touch without suppressing."""
    env.sender.fail = lambda _m: PermanentSendError("554 5.7.1 spam", 554)
    env.enroll("ada@example.com")
    env.run_once()
    assert states(env) == ["failed"]
    assert env.store.leads.suppression("ada@example.com") is None


def test_a_quota_reply_pauses_the_mailbox(env: Env) -> None:
    """5.4.5 quota: the mailbox pauses, the touch waits without using an attempt."""
    replies = [MailboxQuotaExhausted("550 5.4.5 quota", 550, retry_after=3600)]
    env.sender.fail = lambda _m: replies.pop() if replies else None
    env.enroll("ada@example.com")
    env.enroll("bob@example.com")
    env.run_once()
    assert len(env.sender.sent) <= 1
    assert "sales" in env.store.mailboxes.paused(env.clock.now())
    env.clock.advance(minutes=30)
    env.run_once()
    assert len(env.sender.attempts) <= 2  # nothing while paused
    env.clock.advance(minutes=31)
    env.run_once()
    assert sorted(m.recipient for m in env.sender.sent) == ["ada@example.com", "bob@example.com"]
    assert {t.attempts for t in env.touches()} == {1}


def test_the_per_minute_limit_holds_sends_back(tmp_path: Path) -> None:
    """A limit of 2 a minute: two leave now, the third a minute later."""
    from tests.servers.engine_env import mailbox

    env = make_env(tmp_path, mbox=mailbox().model_copy(update={"per_minute_limit": 2}))
    for name in ("a", "b", "c"):
        env.enroll(f"{name}@example.com")
    env.run_once()
    assert len(env.sender.sent) == 2
    env.clock.advance(seconds=61)
    env.run_once()
    assert len(env.sender.sent) == 3


def test_a_template_failing_for_a_lead_fails_that_touch(tmp_path: Path) -> None:
    """A render error for this lead's data: touch failed with the reason, no send."""
    env = make_env(tmp_path, templates={
        "hello.md.j2": "---\nsubject: Hi\n---\n{{ lead.fields.missing.deeper }}\n"})
    env.enroll("ada@example.com")
    env.run_once()
    assert env.sender.attempts == [] and states(env) == ["failed"]
    assert env.store.reports.enrollments()[0]["stop_reason"] == "touch_failed"


def test_lead_data_cannot_inject_headers(env: Env) -> None:
    """A first name with CR/LF already in the database (enroll refuses it now, but rows
    written before, or by hand, may hold it; it ends up in To and Subject): the touch is
    refused at send time too, nothing sent."""
    env.enroll("ada@example.com", first_name="Ada")
    with env.store.db.write() as conn:
        conn.execute(update(Lead.__table__).values(first_name="Ada\r\nBcc: eve@evil.test"))
    env.run_once()
    assert env.sender.attempts == []
    assert "control character" in env.touches()[0].error


def test_a_finished_sequence_enrolls_into_its_follow_on(tmp_path: Path) -> None:
    """`on_finish: {enroll: ripen}`: after the last step the lead starts the next sequence."""
    one = sequence("short", steps=[{"name": "only", "after": "0m", "send_window": "any",
                                     "email": {"template": "hello.md.j2"}}],
                   on_finish={"enroll": "ripen"})
    ripen = sequence("ripen", steps=[{"name": "monthly", "after": "30 days",
                                      "send_window": "any", "email": {"template": "third.md.j2"}}])
    env = make_env(tmp_path, [one, ripen])
    env.enroll("ada@example.com", seq="short")
    env.run_once()
    rows = {e["sequence"]: e for e in env.store.reports.enrollments()}
    assert rows["short"]["state"] == "finished" and rows["ripen"]["state"] == "active"
    assert rows["ripen"]["next_due_at"] == env.clock.now() + timedelta(days=30)


def test_a_copy_goes_to_the_sent_folder(env: Env) -> None:
    """After a 250 the exact bytes are appended to the mailbox's Sent folder."""
    env.enroll("ada@example.com")
    env.run_once()
    assert env.sent_copy.folders["sales"] == [env.sender.sent[0].raw]


def _crash_mid_send(env: Env) -> None:
    """Leave the touch `sending` as a worker killed during SMTP would."""
    claims = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), 10,
                                       timedelta(seconds=60), env.send._planner("sales"))
    now = env.clock.now()
    env.store.queue.begin_send(
        claims[0], env.worker, now, timedelta(seconds=60),
        lambda ctx: env.send._decide(env.catalog.sequences["welcome"], now, ctx))


def test_an_in_doubt_touch_found_in_the_sent_folder_is_sent(env: Env) -> None:
    """The dead worker's message is in Sent: recorded sent, the sequence goes on."""
    env.enroll("ada@example.com")
    _crash_mid_send(env)
    [row] = env.store.reports.touches()
    asyncio.run(env.sent_copy.append("sales", f"Message-ID: {row.message_id}\r\n\r\n".encode()))
    report = asyncio.run(env.recovery.reap(dead=[env.worker]))
    assert report.sent == [row.id] and states(env) == ["sent"]
    assert env.store.reports.enrollments()[0]["step_index"] == 1


def test_an_in_doubt_touch_is_held_for_the_operator(env: Env) -> None:
    """Not in Sent and `in_doubt: hold`: unknown, listed, never guessed."""
    env.enroll("ada@example.com")
    _crash_mid_send(env)
    report = asyncio.run(env.recovery.reap(dead=[env.worker]))
    assert report.held and states(env) == ["unknown"]
    assert [t.id for t in env.store.reports.in_doubt()] == report.held
    env.run_once()
    assert env.sender.attempts == []
    env.recovery.mark_sent(report.held[0], "ops")
    assert states(env) == ["sent"] and env.store.reports.enrollments()[0]["step_index"] == 1


def test_the_operator_can_resend_an_in_doubt_touch(env: Env) -> None:
    """`touches resend ID`: sent again with the same Message-ID."""
    env.enroll("ada@example.com")
    _crash_mid_send(env)
    [held] = asyncio.run(env.recovery.reap(dead=[env.worker])).held
    env.recovery.resend(held, "ops")
    env.run_once()
    [msg] = env.sender.sent
    assert msg.message_id == env.touches()[0].message_id and states(env) == ["sent"]


def test_resend_policy_sends_an_in_doubt_touch_again(tmp_path: Path) -> None:
    """`in_doubt: resend`: claimed again at once, same Message-ID and bytes."""
    env = make_env(tmp_path, [sequence(in_doubt="resend")])
    env.enroll("ada@example.com")
    _crash_mid_send(env)
    report = asyncio.run(env.recovery.reap(dead=[env.worker]))
    assert report.resent
    env.run_once()
    assert [SentMessage.message_id.fget(m) for m in env.sender.sent] == [
        env.touches()[0].message_id]



def test_a_connection_begins_nothing_new_while_its_last_touch_waits_to_be_recorded(
        tmp_path: Path) -> None:
    """The in-doubt bound (docs/send-state-machine.md): a touch frees its connection once
    its SMTP transaction is over, but takes it back while a failed finish is retried, so
    with one connection at most two touches are ever `sending` (one on the wire, one being
    recorded), even while the database refuses some finishes."""
    env = make_env(tmp_path, mbox=mailbox(connections=1))
    sending_at_smtp: list[int] = []

    async def counting(*args: object) -> FakeReply:
        sending_at_smtp.append(sum(t.state == "sending" for t in env.touches()))
        return await FakeSender.send(env.sender, *args)  # type: ignore[arg-type]

    env.sender.send = counting  # type: ignore[method-assign]
    refusals = {3: 3, 4: 3, 5: 3}  # touch id -> finishes refused before one is taken
    finish_in = env.store.queue._finish_in

    def flaky_finish(conn: Any, f: Any, now: Any) -> bool:
        if refusals.get(f.claim.touch_id, 0) > 0:
            refusals[f.claim.touch_id] -= 1
            raise OperationalError("UPDATE touch", {}, Exception("database is locked"))
        return finish_in(conn, f, now)

    env.store.queue._finish_in = flaky_finish  # type: ignore[method-assign]
    for i in range(12):
        env.enroll(f"lead{i}@example.com", first_name="Lead")
    with patch("engine.services.send_due.asyncio.sleep", _no_wait):
        assert env.run_once()["sent"] == 12
    assert not any(refusals.values())  # the refusals happened
    assert max(sending_at_smtp) <= 2, sending_at_smtp
    assert states(env) == ["sent"] * 12


async def _no_wait(_seconds: float) -> None:
    """The finish retry's backoff, without the wait."""
