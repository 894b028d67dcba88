"""Old mail and open tasks when a lead replies (real SQLite store): a message the lead wrote
before an enrollment began (read by a first run or a UIDVALIDITY re-scan) does not stop that
enrollment; a reply closes the lead's open manual tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import HandleInbound, InboundSettings
from engine.testing import RawMail
from tests.servers.engine_env import Env, make_env, sequence


def new_message(written: datetime | None, body: str = "Can we talk about pricing?") -> bytes:
    """A person's own message from the lead's address (matched by sender, no threading)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.com", "sales@acme.test", "Pricing"
    msg["Message-ID"] = "<old@example.com>"
    if written is not None:
        msg["Date"] = format_datetime(written)
    msg.set_content(body + "\n")
    return msg.as_bytes()


def handle(env: Env, raw: bytes, internal_date: datetime | None) -> None:
    HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                  InboundSettings("UTC", ("alice",), frozenset({"sales@acme.test"})))(
        RawMail(raw, internal_date=internal_date))


def states(env: Env) -> dict[str, str]:
    return {e["sequence"]: e["state"] for e in env.store.reports.enrollments()}


def test_mail_written_before_the_enrollment_does_not_stop_it(tmp_path: Path) -> None:
    """INTERNALDATE a week before enrolling: recorded, the enrollment goes on, no handoff,
    and the timeline says why (reply_predates_enrollment)."""
    env = make_env(tmp_path)
    env.enroll("ada@example.com")
    week_ago = env.clock.now() - timedelta(days=7)
    handle(env, new_message(week_ago), week_ago)
    assert states(env) == {"welcome": "active"}
    assert env.store.handoffs.list() == []
    report = env.store.reports.lead("ada@example.com")
    assert report is not None
    assert "reply_predates_enrollment" in [t.kind for t in report.timeline]
    env.run_once()
    assert len(env.sender.sent) == 1


def test_without_internaldate_the_date_header_decides(tmp_path: Path) -> None:
    """No INTERNALDATE (a replay): the Date header, a week old, is older mail too."""
    env = make_env(tmp_path)
    env.enroll("ada@example.com")
    handle(env, new_message(env.clock.now() - timedelta(days=7)), None)
    assert states(env) == {"welcome": "active"}


def test_only_the_enrollments_it_predates_go_on(tmp_path: Path) -> None:
    """Enrolled in welcome, the lead writes, then is enrolled in ripen; the re-scan reads
    the message: welcome is handed off, ripen (newer than the message) keeps its claimed
    touch and sends it."""
    env = make_env(tmp_path, [sequence(), sequence("ripen")])
    env.enroll("ada@example.com")
    env.run_once()
    written = env.clock.advance(hours=1)
    env.clock.advance(days=1)
    env.enroll("ada@example.com", "ripen")
    claims = env.store.queue.claim_due(env.worker, ["ripen"], env.clock.now(), 10,
                                       timedelta(seconds=60), env.send._planner("sales"))
    assert len(claims) == 1
    handle(env, new_message(written), written)
    assert states(env) == {"welcome": "handed_off", "ripen": "active"}
    assert [h.sequence for h in env.store.handoffs.list()] == ["welcome"]
    assert [t.state for t in env.touches() if t.sequence == "ripen"] == ["claimed"]


def test_a_reply_minutes_off_by_the_senders_clock_still_stops_it(tmp_path: Path) -> None:
    """A Date five minutes before enrolling (a slow clock) is within the margin: an answer."""
    env = make_env(tmp_path)
    env.enroll("ada@example.com")
    handle(env, new_message(env.clock.now() - timedelta(minutes=5)), None)
    assert states(env) == {"welcome": "handed_off"}


def test_a_reply_closes_the_leads_open_tasks(tmp_path: Path) -> None:
    """A call task is open when the lead replies: it is skipped, so `nurture tasks` no longer
    asks a rep to call someone who already answered."""
    call = {"name": "call", "after": "0m", "send_window": "any",
            "task": {"kind": "call", "note": "Call {{ lead.first_name }}"}}
    env = make_env(tmp_path, [sequence(steps=[call])])
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    assert len(env.store.reports.open_tasks()) == 1
    env.clock.advance(hours=1)
    handle(env, new_message(env.clock.now()), env.clock.now())
    assert env.store.reports.open_tasks() == []
    assert [t.state for t in env.touches()] == ["skipped"]
    assert states(env) == {"welcome": "handed_off"}
