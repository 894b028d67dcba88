"""handle_inbound on the real store (SQLite file): the transaction, the queue and the cursors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from engine.errors import ConcurrentUpdate, Suppressed
from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import HandleInbound, InboundSettings
from engine.services.send_due import PassReport
from engine.store.inbound import CursorTable
from engine.testing import RawMail
from tests.servers.engine_env import Env, make_env, sequence


def reply_to(message_id: str, body: str = "Sounds good, call me.", frm: str = "ada@example.com",
             mid: str = "<r1@example.com>", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = frm, "sales@acme.test", "Re: Hello Ada"
    msg["Message-ID"], msg["In-Reply-To"] = mid, message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body + "\n")
    return msg.as_bytes()


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path, [sequence(), sequence("ripen")])


def handler(env: Env, reps: tuple[str, ...] = ("alice", "bob")) -> HandleInbound:
    return HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                         InboundSettings("UTC", reps, frozenset({"sales@acme.test"})))


def first_touch(env: Env) -> str:
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    return env.touches()[0].message_id


def test_a_reply_hands_off_in_the_database(env: Env) -> None:
    """Enrollment handed_off/replied, the inbound row matched, a handoff for alice."""
    done = handler(env)(RawMail(reply_to(first_touch(env))))
    report = env.store.reports.lead("ada@example.com")
    assert report is not None
    [e] = report.enrollments
    assert (e["state"], e["stop_reason"]) == ("handed_off", "replied")
    [h] = env.store.handoffs.list()
    assert (h.rep, h.state, h.sequence, h.inbound_id) == ("alice", "open", "welcome",
                                                          done.inbound_id)
    kinds = [t.kind for t in report.timeline]
    assert kinds[-4:] == ["inbound_received", "enrollment_stopped", "reply_detected",
                          "handoff_created"]


def test_nothing_more_is_sent_after_a_reply(env: Env) -> None:
    """The next step falls due a day later: no touch, no SMTP."""
    handler(env)(RawMail(reply_to(first_touch(env))))
    env.clock.advance(days=2)
    env.run_once()
    assert len(env.sender.sent) == 1 and len(env.touches()) == 1


def test_a_claimed_touch_is_skipped_and_its_sender_stands_down(env: Env) -> None:
    """Reply between claim and begin_send: the touch is skipped, nothing reaches SMTP."""
    mid = first_touch(env)
    env.clock.advance(days=1)
    [claim] = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), 10,
                                        timedelta(seconds=60), env.send._planner("sales"))
    done = handler(env)(RawMail(reply_to(mid)))
    asyncio.run(env.send.process(claim, PassReport()))
    assert done.skipped_touches == [claim.touch_id]
    assert len(env.sender.sent) == 1 and env.touches()[1].state == "skipped"


def test_an_out_of_office_pauses_then_the_claim_resumes_it(env: Env) -> None:
    """Paused for 3 business days: the step due tomorrow waits, then goes after the pause."""
    mid = first_touch(env)
    done = handler(env)(RawMail(reply_to(mid, "I am out of the office.", mid="<ooo@example.com>",
                                      Auto_Submitted="auto-replied")))
    [until] = done.paused.values()
    env.clock.advance(days=1, hours=1)
    env.run_once()
    assert len(env.sender.sent) == 1
    env.clock.set(until + timedelta(seconds=1))
    env.run_once()
    assert len(env.sender.sent) == 2
    kinds = [t.kind for t in env.store.reports.lead("ada@example.com").timeline]  # type: ignore[union-attr]
    assert "enrollment_paused" in kinds and "enrollment_resumed" in kinds


def test_a_hard_bounce_suppresses_the_address_for_good(env: Env) -> None:
    """5.1.1 in a DSN naming our touch: suppressed; enrolling again is refused."""
    mid = first_touch(env)
    raw = (f"From: MAILER-DAEMON@mx.example.com\r\nTo: sales@acme.test\r\n"
           f"Subject: Undelivered Mail\r\nMessage-ID: <b1@mx.example.com>\r\nMIME-Version: 1.0\r\n"
           f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
           f"--B\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--B\r\n"
           f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
           f"Final-Recipient: rfc822; ada@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
           f"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {mid}\r\n"
           f"To: ada@example.com\r\n\r\n--B--\r\n").encode()
    done = handler(env)(RawMail(raw))
    assert (done.kind, done.matched_by) == ("bounce_hard", "returned-message")
    assert env.store.leads.suppression("ada@example.com") == "hard_bounce"
    with pytest.raises(Suppressed):
        env.enroll("ada@example.com", seq="ripen")


def test_the_round_robin_counter_survives_a_restart(env: Env) -> None:
    """A new service (a restarted daemon) carries on with the next rep."""
    for who in ("a", "b"):
        env.enroll(f"{who}@example.com")
    env.run_once()
    touches = {t.email: t.message_id for t in env.touches()}
    handler(env)(RawMail(reply_to(touches["a@example.com"], frm="a@example.com", mid="<1@x>")))
    handler(env)(RawMail(reply_to(touches["b@example.com"], frm="b@example.com", mid="<2@x>"),
                     uid=2))
    assert sorted(h.rep for h in env.store.handoffs.list()) == ["alice", "bob"]


def test_recording_the_same_uid_twice_is_a_concurrent_update(env: Env) -> None:
    """The unique (mailbox, folder, uidvalidity, uid) turns a race into ConcurrentUpdate."""
    now = datetime(2026, 3, 2, tzinfo=UTC)
    row = {"mailbox": "sales", "folder": "INBOX", "uidvalidity": 1, "uid": 5, "raw": b""}
    with env.store.inbound.transaction(now) as tx:
        tx.record(**row)
    with pytest.raises(ConcurrentUpdate), env.store.inbound.transaction(now) as tx:
        tx.record(**row)


def test_cursors_are_saved_and_loaded(env: Env) -> None:
    """Per mailbox and folder; a save replaces the previous one."""
    cursors = CursorTable(env.store.db)
    assert cursors.load("sales", "INBOX") is None
    cursors.save("sales", "INBOX", 11, 5)
    cursors.save("sales", "INBOX", 11, 9)
    cursors.save("sales", "Replies", 3, 2)
    assert (cursors.load("sales", "INBOX"), cursors.load("sales", "Replies")) == ((11, 9), (3, 2))


def test_a_message_id_that_only_looks_like_ours_names_nobody(env: Env) -> None:
    """A stranger's "please remove me" whose In-Reply-To has our shape but was never sent by
    this installation (`<nurture.1.0.0.x@other-vendor.example>`: another installation, a
    restored database): it matched enrollment 1 by its number, stopped Ada and suppressed
    her address (found by review). Now it names nobody: Ada goes on."""
    first_touch(env)
    done = handler(env)(RawMail(reply_to("<nurture.1.0.0.deadbeef0000@other-vendor.example>",
                                         body="Please remove me from your list.",
                                         frm="stranger@elsewhere.example")))
    assert done.lead_id is None
    assert env.store.leads.suppression("ada@example.com") is None
    report = env.store.reports.lead("ada@example.com")
    assert report is not None and report.enrollments[0]["state"] == "active"
