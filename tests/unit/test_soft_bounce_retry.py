"""A soft bounce on the real store (SQLite file) and the real send loop: the email that
bounced goes out again after rules.soft_bounce_retry, as the same touch with the same
Message-ID, without moving the enrollment twice; at rules.soft_bounce_limit the address is
suppressed and nothing is sent again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import Handled, HandleInbound, InboundSettings
from tests.servers.engine_env import Env, make_env, sequence

STEPS = [{"name": "first", "after": "0m", "send_window": "any",
             "email": {"template": "hello.md.j2"}},
            {"name": "later", "after": "30 days", "send_window": "any",
             "email": {"template": "again.md.j2"}}]


@dataclass
class Raw:
    raw: bytes
    uid: int
    mailbox: str = "sales"
    folder: str = "INBOX"
    uidvalidity: int = 1


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path, [sequence(steps=STEPS, rules={"soft_bounce_limit": 3})])


def soft_bounce(env: Env, uid: int) -> Handled:
    """The relay gave up on our first email (4.2.2 mailbox full, Action: failed)."""
    message_id = env.touches()[0].message_id
    raw = (f"From: MAILER-DAEMON@mx.example.com\r\nTo: sales@acme.test\r\n"
           f"Subject: Undelivered Mail Returned to Sender\r\n"
           f"Message-ID: <dsn{uid}@mx.example.com>\r\nMIME-Version: 1.0\r\n"
           f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
           f"--B\r\nContent-Type: text/plain\r\n\r\nMailbox full.\r\n--B\r\n"
           f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com"
           f"\r\n\r\nFinal-Recipient: rfc822; ada@example.com\r\nAction: failed\r\n"
           f"Status: 4.2.2\r\nDiagnostic-Code: smtp; 452 4.2.2 mailbox full\r\n\r\n--B\r\n"
           f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n"
           f"To: ada@example.com\r\n\r\n--B--\r\n").encode()
    return HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                         InboundSettings("UTC", ("alice",)))(Raw(raw, uid))


def message_ids(env: Env) -> list[str]:
    return [str(message_from_bytes(m.raw)["Message-ID"]) for m in env.sender.sent]


def test_the_bounced_email_goes_out_again_as_the_same_touch(env: Env) -> None:
    """Sent, soft-bounced, nothing before the retry time, then the same Message-ID once
    more; the enrollment still waits for `later` at the time it had."""
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    [first] = env.touches()
    later_due = env.store.reports.enrollments()[0]["next_due_at"]
    assert soft_bounce(env, 1).retried == [first.id]
    env.clock.advance(hours=23)
    env.run_once()
    assert len(env.sender.sent) == 1
    env.clock.advance(hours=1)
    env.run_once()
    assert message_ids(env) == [first.message_id, first.message_id]
    [again] = env.touches()
    assert (again.id, again.state) == (first.id, "sent")
    enrollment = env.store.reports.enrollments()[0]
    assert (enrollment["state"], enrollment["next_due_at"]) == ("active", later_due)


def test_the_limit_suppresses_and_nothing_is_sent_again(env: Env) -> None:
    """Bounce, retry, bounce, retry, bounce: the third (the limit) stops the enrollment and
    suppresses the address instead of a third retry."""
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    for uid in (1, 2):
        assert soft_bounce(env, uid).retried
        env.clock.advance(timedelta(days=1))
        env.run_once()
    done = soft_bounce(env, 3)
    assert done.retried == [] and done.suppressed == ["ada@example.com"]
    env.clock.advance(timedelta(days=40))
    env.run_once()
    assert len(env.sender.sent) == 3
    assert env.store.leads.suppression("ada@example.com") == "soft_bounce_repeat"
    assert env.store.reports.enrollments()[0]["state"] == "stopped"


def test_a_soft_bounce_of_the_last_step_is_counted_not_sent_again(tmp_path: Path) -> None:
    """The last step finished the enrollment and ran its on_finish: the bounce is counted and
    logged `soft_bounce_not_retried`; nothing is sent again, the enrollment stays finished and
    the follow-on enrollment is the only one (docs/handoff.md says why)."""
    last_only = sequence("welcome", steps=STEPS[:1], on_finish={"enroll": "later-track"},
                         rules={"soft_bounce_limit": 3})
    track = sequence("later-track", steps=[{**STEPS[1], "after": "60 days"}])
    env = make_env(tmp_path, [last_only, track])
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    assert [e["state"] for e in env.store.reports.enrollments()] == ["active", "finished"]
    done = soft_bounce(env, 1)
    assert (done.retried, done.suppressed) == ([], [])
    env.clock.advance(days=2)
    env.run_once()
    assert len(env.sender.sent) == 1
    assert [(e["sequence"], e["state"]) for e in env.store.reports.enrollments()] == [
        ("later-track", "active"), ("welcome", "finished")]
    kinds = [t.kind for t in env.store.reports.lead("ada@example.com").timeline]
    assert kinds.count("soft_bounce_counted") == 1 and "soft_bounce_not_retried" in kinds


@pytest.mark.parametrize("unnamed", [False, True], ids=["named", "row-from-before-0004"])
def test_a_step_that_falls_due_while_the_bounced_email_waits_goes_out_after_it(
        tmp_path: Path, unnamed: bool) -> None:
    """`later` falls due (12 hours) before the bounced `first` is retried (1 day): it waits
    for the retry, then goes out, and `last` after it; the enrollment finishes. (It used to
    lose its due time at the claim that found the retry waiting: active, never due again.)
    The same for an enrollment row without a step name (from before migration 0004)."""
    steps = [STEPS[0], {**STEPS[1], "after": "12 hours"},
             {"name": "last", "after": "2 days", "send_window": "any",
              "email": {"template": "again.md.j2"}}]
    env = make_env(tmp_path, [sequence(steps=steps, rules={"soft_bounce_limit": 3})])
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    [first] = env.touches()
    assert soft_bounce(env, 1).retried == [first.id]
    if unnamed:
        with env.store.db.write() as conn:
            conn.execute(text("UPDATE enrollment SET step_name = ''"))
    env.clock.advance(hours=13)
    env.run_once()
    assert len(env.sender.sent) == 1  # `later` waits for the retry of `first`
    env.clock.advance(hours=11)
    env.run_once()
    assert message_ids(env) == [first.message_id, first.message_id]
    env.clock.advance(minutes=2)
    env.run_once()
    env.clock.advance(days=3)
    env.run_once()
    assert [(t.step, t.state) for t in env.touches()] == [
        ("first", "sent"), ("later", "sent"), ("last", "sent")]
    assert len(env.sender.sent) == 4
    assert env.store.reports.enrollments()[0]["state"] == "finished"
