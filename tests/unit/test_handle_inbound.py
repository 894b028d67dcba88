"""handle_inbound on an in-memory store: matching, each action, idempotence, bad mail."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from engine.authoring.catalog import Catalog
from engine.domain.lead import LeadRecord
from engine.domain.sequence import Sequence
from engine.errors import ConcurrentUpdate, DatabaseError, RetryLater
from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import (
    HandleInbound,
    HandoffEvent,
    InboundSettings,
    resume_at,
)
from engine.testing import FakeEnrollment, FakeInboundStore, FrozenClock, RawMail
from tests.servers.engine_env import sequence

OURS = "<nurture.1.0.0.abc123@acme.test>"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def mail(body: str = "Yes, let's talk on Tuesday.", *, frm: str = "ada@example.com",
         subject: str = "Re: Hello Ada", in_reply_to: str = OURS, references: str = "",
         message_id: str = "<r1@example.com>", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Ada <{frm}>"
    msg["To"] = "sales@acme.test"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Mar 2026 08:55:00 +0000"
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body + "\n")
    return msg.as_bytes()


def dsn(recipient: str, status: str, returned_id: str = OURS, tag: str = "1",
        action: str = "") -> bytes:
    """An RFC 3464 delivery-status report for a message of ours (4.x.x: a delay notice,
    unless `action` says the relay gave up)."""
    action = action or ("failed" if status.startswith("5") else "delayed")
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: sales@acme.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn.{tag}.{status}@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message to {recipient} could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} mailbox problem

--B
Content-Type: message/rfc822

From: sales@acme.test
To: {recipient}
Subject: Hello
Message-ID: {returned_id}

Hello
--B--
""".replace("\n", "\r\n").encode()


@pytest.fixture
def store() -> FakeInboundStore:
    return FakeInboundStore()


@pytest.fixture
def lead(store: FakeInboundStore) -> LeadRecord:
    return store.add_lead("ada@example.com", first_name="Ada", timezone="Europe/Berlin")


@pytest.fixture
def enrolled(store: FakeInboundStore, lead: LeadRecord) -> FakeEnrollment:
    e = store.enroll(lead, "welcome")
    store.touch(e, OURS)
    return e


class Told(list[HandoffEvent]):
    def __call__(self, event: HandoffEvent) -> None:
        self.append(event)


def service(store: FakeInboundStore, *seqs: Sequence, reps: tuple[str, ...] = ("alice", "bob"),
            told: Told | None = None, **kw: Any) -> HandleInbound:
    catalog = Catalog(sequences={s.name: s for s in (seqs or (sequence(),))})
    settings = InboundSettings("UTC", reps, frozenset({"sales@acme.test", "alice@acme.test"}))
    return HandleInbound(store, catalog, FrozenClock(NOW), parse_inbound, settings,
                         told if told is not None else Told(), sleep=lambda _: None, **kw)


# --- human replies ---------------------------------------------------------------------------

def test_a_reply_to_our_touch_hands_the_lead_off(store: FakeInboundStore,
                                                 enrolled: FakeEnrollment) -> None:
    """In-Reply-To names our touch: the enrollment is handed off and a handoff opens."""
    told = Told()
    done = service(store, told=told)(RawMail(mail()))
    assert (done.kind, done.matched_by, done.lead_id) == ("human_reply", "in-reply-to", 1)
    assert (enrolled.state, enrolled.stop_reason) == ("handed_off", "replied")
    assert store.data.handoffs[1]["state"] == "open" and told == [HandoffEvent(1, 1, True)]
    assert store.data.inbound[1]["new_text"] == "Yes, let's talk on Tuesday."


def test_references_are_matched_when_in_reply_to_is_not_ours(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """A reply to a colleague's forward still names our touch in References."""
    done = service(store)(RawMail(mail(in_reply_to="<fwd@example.com>",
                                   references=f"{OURS} <fwd@example.com>")))
    assert done.matched_by == "references" and enrolled.state == "handed_off"


def test_the_sender_is_matched_when_no_header_names_our_touch(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """No threading headers, a Re: subject from the lead's address: matched by sender."""
    done = service(store)(RawMail(mail(in_reply_to="")))
    assert (done.matched_by, enrolled.state) == ("sender", "handed_off")


def test_unmatched_mail_is_recorded_and_left_alone(store: FakeInboundStore,
                                                   enrolled: FakeEnrollment) -> None:
    """A stranger's reply to someone else's thread changes nothing."""
    done = service(store)(RawMail(mail(frm="eve@example.org", in_reply_to="<x@example.org>")))
    assert (done.matched_by, done.lead_id, done.inbound_id) == ("none", None, 1)
    assert enrolled.state == "active" and store.data.handoffs == {}
    assert store.data.inbound[1]["matched_by"] == "none"


def test_every_live_enrollment_of_the_lead_stops(store: FakeInboundStore, lead: LeadRecord,
                                                 enrolled: FakeEnrollment) -> None:
    """A paused enrollment in another sequence ends too; a finished one is left as it is."""
    paused = store.enroll(lead, "ripen", state="paused")
    finished = store.enroll(lead, "old", state="finished")
    done = service(store)(RawMail(mail()))
    assert sorted(done.ended) == [enrolled.id, paused.id]
    assert (paused.state, finished.state) == ("handed_off", "finished")


def test_claimed_touches_are_skipped_and_sending_ones_reported(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """A claimed touch never goes out; one already in SMTP is named as in flight."""
    claimed = store.touch(enrolled, "<c@acme.test>", state="claimed")
    sending = store.touch(enrolled, "<s@acme.test>", state="sending")
    done = service(store)(RawMail(mail()))
    assert claimed.state == "skipped" and done.skipped_touches == [claimed.id]
    assert done.in_flight == [sending.id]


def test_rules_reply_stop_stops_without_a_handoff(store: FakeInboundStore,
                                                  enrolled: FakeEnrollment) -> None:
    """`rules: {reply: stop}`: stopped as replied, nobody is handed the lead."""
    seq = sequence(rules={"reply": "stop"})
    done = service(store, seq)(RawMail(mail()))
    assert (enrolled.state, enrolled.stop_reason) == ("stopped", "replied")
    assert done.handoff is None and store.data.handoffs == {}


def test_a_second_reply_joins_the_open_handoff(store: FakeInboundStore,
                                               enrolled: FakeEnrollment) -> None:
    """The lead writes again while the handoff is open: no second handoff, the rep is told."""
    told = Told()
    svc = service(store, told=told)
    svc(RawMail(mail()))
    svc(RawMail(mail(body="Also, bring pricing.", message_id="<r2@example.com>"), uid=2))
    assert len(store.data.handoffs) == 1
    assert told == [HandoffEvent(1, 1, True), HandoffEvent(1, 2, False)]
    assert "handoff_reply" in store.kinds()


def test_a_new_message_from_a_lead_counts_as_an_answer(store: FakeInboundStore,
                                                       enrolled: FakeEnrollment) -> None:
    """Not threaded, no Re:, but written by a person from the lead's own address."""
    done = service(store)(RawMail(mail(subject="Pricing question", in_reply_to="")))
    assert done.kind == "human_reply" and enrolled.state == "handed_off"
    assert done.reason.startswith("a person's new message from a lead")


# --- who gets the lead -----------------------------------------------------------------------

@pytest.mark.parametrize(("owner", "lead_owner", "rep"), [
    ("bob", "", "bob"), ("lead", "bob", "bob"), ("lead", "", "alice"),
])
def test_the_rep_follows_the_sequence_owner(store: FakeInboundStore, owner: str,
                                            lead_owner: str, rep: str) -> None:
    """A rep's name, the lead's owner, or round-robin when the lead has no owner."""
    lead = store.add_lead("ada@example.com", owner=lead_owner)
    store.touch(store.enroll(lead, "welcome"), OURS)
    service(store, sequence(owner=owner))(RawMail(mail()))
    assert store.data.handoffs[1]["rep"] == rep


@pytest.mark.parametrize(("owner", "lead_owner", "reps", "why"), [
    ("zed", "", ("alice",), "owner 'zed' of sequence 'welcome' is not a configured rep"),
    ("lead", "dave", ("alice",), "the lead's owner 'dave' is not a configured rep"),
    ("round-robin", "", (), "no reps are configured"),
])
def test_a_handoff_no_rep_can_take_stays_open_unassigned_and_says_why(
        store: FakeInboundStore, owner: str, lead_owner: str, reps: tuple[str, ...],
        why: str) -> None:
    """An owner who is not a configured rep, or no reps at all: the handoff is still made,
    open to any rep, with the reason on it and in the log."""
    lead = store.add_lead("ada@example.com", owner=lead_owner)
    store.touch(store.enroll(lead, "welcome"), OURS)
    told = Told()
    service(store, sequence(owner=owner), reps=reps, told=told)(RawMail(mail()))
    handoff = store.data.handoffs[1]
    assert (handoff["rep"], handoff["state"]) == ("", "open")
    assert handoff["note"] == f"unassigned: {why} (nurture.yaml, reps:)"
    assert told == [HandoffEvent(1, 1, True)]  # the team's webhook still hears of it
    assert "handoff_unassigned" in store.kinds()


def test_round_robin_takes_turns(store: FakeInboundStore) -> None:
    """Three replies from three leads: alice, bob, alice."""
    svc = service(store)
    for i in range(3):
        lead = store.add_lead(f"l{i}@example.com")
        store.touch(store.enroll(lead, "welcome"), f"<nurture.{i}.0.0.x@acme.test>")
        svc(RawMail(mail(frm=f"l{i}@example.com", in_reply_to=f"<nurture.{i}.0.0.x@acme.test>",
                     message_id=f"<r{i}@example.com>"), uid=i + 1))
    assert [h["rep"] for h in store.data.handoffs.values()] == ["alice", "bob", "alice"]


# --- auto-replies, bounces, unsubscribes ----------------------------------------------------

def test_an_out_of_office_pauses_until_the_return_date(store: FakeInboundStore,
                                                       enrolled: FakeEnrollment) -> None:
    """Back on 9 March: paused until the window opens that day in the lead's zone."""
    seq = sequence(send_window={"days": "mon-fri", "hours": "09:00-17:00"}, timezone="lead")
    done = service(store, seq)(RawMail(mail(
        "I am out of the office until 9 March 2026 with limited access to email.",
        subject="Automatic reply: Hello Ada", Auto_Submitted="auto-replied")))
    assert done.kind == "auto_reply" and enrolled.state == "paused"
    assert enrolled.paused_until == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # 09:00 Berlin
    assert store.data.handoffs == {}


def test_an_out_of_office_without_a_date_pauses_for_the_rule(store: FakeInboundStore,
                                                             enrolled: FakeEnrollment) -> None:
    """No return date: paused for rules.auto_reply_pause (3 business days by default)."""
    service(store)(RawMail(mail("I am away.", subject="Out of office",
                            Auto_Submitted="auto-replied")))
    assert enrolled.paused_until == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


def test_rules_auto_reply_ignore_keeps_sending(store: FakeInboundStore,
                                               enrolled: FakeEnrollment) -> None:
    """`rules: {auto_reply: ignore}`: recorded, the enrollment stays active."""
    done = service(store, sequence(rules={"auto_reply": "ignore"}))(RawMail(mail(
        "I am away.", subject="Out of office", Auto_Submitted="auto-replied")))
    assert done.kind == "auto_reply" and enrolled.state == "active"


def test_a_hard_bounce_stops_and_suppresses(store: FakeInboundStore,
                                            enrolled: FakeEnrollment) -> None:
    """5.1.1 for our touch: matched by the returned message, stopped, address suppressed."""
    done = service(store)(RawMail(dsn("ada@example.com", "5.1.1")))
    assert (done.kind, done.matched_by) == ("bounce_hard", "returned-message")
    assert (enrolled.state, enrolled.stop_reason) == ("stopped", "bounced")
    assert store.data.suppressed == {"ada@example.com": "hard_bounce"}


def test_soft_bounces_suppress_after_the_limit(store: FakeInboundStore,
                                               enrolled: FakeEnrollment) -> None:
    """4.2.2 mailbox full: counted; the third one (the default limit) suppresses."""
    svc = service(store)
    for uid in (1, 2):
        svc(RawMail(dsn("ada@example.com", "4.2.2", tag=str(uid)), uid=uid))
    assert enrolled.state == "active" and store.data.suppressed == {}
    done = svc(RawMail(dsn("ada@example.com", "4.2.2", tag="3"), uid=3))
    assert done.kind == "bounce_soft" and enrolled.state == "stopped"
    assert store.data.suppressed == {"ada@example.com": "soft_bounce_repeat"}


def test_a_soft_bounce_sends_the_same_email_again_a_day_later(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """4.2.2 mailbox full and the relay gave up (Action: failed): counted, and the touch
    that bounced waits to go out again after rules.soft_bounce_retry (1 day)."""
    done = service(store)(RawMail(dsn("ada@example.com", "4.2.2", action="failed")))
    assert done.kind == "bounce_soft" and done.retried == [1]
    touch = store.data.touches[1]
    assert (touch.state, touch.retry_at) == ("claimed", NOW + timedelta(days=1))
    assert enrolled.state == "active" and store.data.suppressed == {}


def test_a_delay_notice_is_counted_but_not_sent_again(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """Action: delayed means the relay still holds the email: a resend could deliver it
    twice, so it is only counted."""
    done = service(store)(RawMail(dsn("ada@example.com", "4.2.2")))
    assert done.kind == "bounce_soft" and done.retried == []
    assert store.data.touches[1].state == "sent"
    assert "soft_bounce_not_retried" in store.kinds()


def test_an_unsubscribe_request_stops_and_suppresses(store: FakeInboundStore,
                                                     enrolled: FakeEnrollment) -> None:
    """"Please remove me from your list": stopped and suppressed as unsubscribe."""
    done = service(store)(RawMail(mail("Please remove me from your mailing list.")))
    assert done.kind == "unsubscribe"
    assert (enrolled.state, enrolled.stop_reason) == ("stopped", "unsubscribe")
    assert store.data.suppressed == {"ada@example.com": "unsubscribe"}


# --- idempotence and bad input ---------------------------------------------------------------

def test_the_same_uid_is_handled_once(store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """Delivered twice by the watcher (at-least-once): one row, one handoff."""
    svc = service(store)
    svc(RawMail(mail()))
    again = svc(RawMail(mail()))
    assert again.duplicate == "same UID" and len(store.data.inbound) == 1


def test_the_same_message_id_in_another_folder_is_handled_once(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """After a UIDVALIDITY change or in a second folder: deduped on Message-ID."""
    svc = service(store)
    svc(RawMail(mail()))
    again = svc(RawMail(mail(), uidvalidity=8, uid=40))
    assert again.duplicate == "same Message-ID" and len(store.data.handoffs) == 1


def test_unreadable_mail_is_recorded_as_other(store: FakeInboundStore,
                                              enrolled: FakeEnrollment) -> None:
    """The parser blowing up never reaches the watcher: `other`, with the error."""
    def broken(raw: bytes) -> Any:
        raise ValueError("boom")
    catalog = Catalog(sequences={"welcome": sequence()})
    svc = HandleInbound(store, catalog, FrozenClock(NOW), broken, InboundSettings())
    done = svc(RawMail(b"\x00garbage"))
    assert done.kind == "other" and "boom" in done.reason
    assert store.data.inbound[1]["raw"] == b"\x00garbage" and enrolled.state == "active"


def test_our_own_notification_is_not_a_reply(store: FakeInboundStore,
                                             enrolled: FakeEnrollment) -> None:
    """A rep notification landing in the watched inbox is recorded as other."""
    done = service(store)(RawMail(mail(X_Nurture_Notification="handoff")))
    assert done.kind == "other" and enrolled.state == "active"


def test_a_database_conflict_is_retried(store: FakeInboundStore,
                                        enrolled: FakeEnrollment) -> None:
    """Another daemon recorded at the same moment: the transaction runs again."""
    store.fail.append(ConcurrentUpdate())
    done = service(store)(RawMail(mail()))
    assert done.kind == "human_reply" and store.commits == 1


def test_a_database_that_stays_away_asks_the_watcher_to_retry(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """After its quick retries, handle raises RetryLater (the watcher keeps the message for
    later) and nothing is recorded: the message is not half-handled."""
    store.fail.extend(DatabaseError("connection refused") for _ in range(4))
    with pytest.raises(RetryLater, match="UID 1 could not be recorded: connection refused"):
        service(store)(RawMail(mail()))
    assert store.commits == 0 and store.data.inbound == {} and enrolled.state == "active"


def test_a_failing_notification_does_not_undo_the_handoff(
        store: FakeInboundStore, enrolled: FakeEnrollment) -> None:
    """on_handoff raising is logged; the handoff stands and handle returns."""
    def explode(_: HandoffEvent) -> None:
        raise RuntimeError("smtp down")
    catalog = Catalog(sequences={"welcome": sequence()})
    svc = HandleInbound(store, catalog, FrozenClock(NOW), parse_inbound, InboundSettings(),
                        explode)
    assert svc(RawMail(mail())).handoff is not None and len(store.data.handoffs) == 1


# --- when a pause ends (pure) ---------------------------------------------------------------

def test_a_return_date_on_a_weekend_resumes_on_monday() -> None:
    """Back on Saturday 7 March: the window opens again on Monday 9 March, 09:00 local."""
    seq = sequence(send_window={"days": "mon-fri", "hours": "09:00-17:00"},
                   timezone="America/New_York")
    lead = LeadRecord(1, "a@example.com")
    assert resume_at(date(2026, 3, 7), seq, lead, NOW, "UTC") == datetime(
        2026, 3, 9, 13, 0, tzinfo=UTC)


def test_a_past_return_date_falls_back_to_the_pause_rule() -> None:
    """A return date already gone: now + auto_reply_pause."""
    seq = sequence(rules={"auto_reply_pause": "2 days"})
    got = resume_at(date(2026, 2, 1), seq, LeadRecord(1, "a@example.com"), NOW, "UTC")
    assert got == NOW + timedelta(days=2)
