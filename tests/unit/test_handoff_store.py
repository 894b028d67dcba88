"""Handoffs on the real store (SQLite file): list, show, claim, close, resume into nurture."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import insert

from engine.errors import AlreadyEnrolled, InvalidTransition, Suppressed
from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import HandleInbound, InboundSettings
from engine.services.handoff import Handoffs
from engine.store.tables import Enrollment
from engine.testing import RawMail
from tests.servers.engine_env import Env, make_env, sequence


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path, [sequence(), sequence("ripen")])


@pytest.fixture
def handoff_id(env: Env) -> int:
    """Ada was sent the first touch and replied: handoff for alice."""
    return replied(env, ("alice", "bob"))


def replied(env: Env, reps: tuple[str, ...]) -> int:
    """Ada is sent the first touch and replies; the handoff's id."""
    env.enroll("ada@example.com", first_name="Ada", company="Acme")
    env.run_once()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.com", "sales@acme.test", "Re: Hello"
    msg["Message-ID"], msg["In-Reply-To"] = "<r@example.com>", env.touches()[0].message_id
    msg.set_content("Call me tomorrow.\n\n-- \nAda\n")
    done = HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                         InboundSettings("UTC", reps))(RawMail(msg.as_bytes()))
    assert done.handoff is not None
    return done.handoff.handoff_id


def test_with_no_reps_the_handoff_waits_unassigned_with_the_reason(env: Env) -> None:
    """No reps configured: the handoff is open, for nobody, says why, and any rep can claim."""
    hid = replied(env, ())
    [h] = service(env).list("open")
    assert (h.id, h.rep, h.note) == (hid, "", "unassigned: no reps are configured "
                                               "(nurture.yaml, reps:)")
    assert service(env).claim(hid, "alice").rep == "alice"


def service(env: Env) -> Handoffs:
    return Handoffs(env.store.handoffs, env.catalog, env.clock, "UTC", ("alice", "bob"))


def test_show_has_the_reply_the_thread_and_the_timeline(env: Env, handoff_id: int) -> None:
    """What the rep reads: the new text, our email then theirs, and every event."""
    d = service(env).show(handoff_id)
    assert (d.handoff.name, d.handoff.company, d.lead.email) == ("Ada", "Acme", "ada@example.com")
    assert d.reply.new_text == "Call me tomorrow."
    assert [(m.direction, m.subject) for m in d.thread] == [("out", "Hello Ada"),
                                                            ("in", "Re: Hello")]
    assert [t.kind for t in d.timeline][0] == "enrolled"
    assert d.enrollments[0]["state"] == "handed_off"


def test_claim_then_close_as_won(env: Env, handoff_id: int) -> None:
    """open -> claimed (bob) -> closed won; listed under each state in turn."""
    svc = service(env)
    assert [h.id for h in svc.list("open")] == [handoff_id]
    svc.claim(handoff_id, "bob")
    assert [(h.rep, h.state) for h in svc.list("claimed")] == [("bob", "claimed")]
    closed = svc.close(handoff_id, "won", note="signed")
    assert (closed.state, closed.outcome, closed.note) == ("closed", "won", "signed")
    assert closed.claimed_at is not None and closed.closed_at == env.clock.now()


def test_a_stale_move_loses_cleanly(env: Env, handoff_id: int) -> None:
    """The store's guard: a move that expects `open` after a close is refused."""
    service(env).close(handoff_id, "lost")
    with pytest.raises(InvalidTransition, match="changed meanwhile"):
        env.store.handoffs.move(handoff_id, ["open"], datetime.now(UTC), "handoff_claimed",
                                state="claimed", rep="bob")


def test_resume_puts_the_lead_into_nurture_and_it_sends(env: Env, handoff_id: int) -> None:
    """Closed as renurtured; the ripen enrollment's first touch goes out."""
    env.clock.advance(hours=2)  # the rep decides later than the reply came in
    row, enrollment_id = service(env).resume(handoff_id, "ripen", by="alice")
    assert (row.state, row.outcome) == ("closed", "renurtured")
    env.run_once()
    assert [t.sequence for t in env.touches()] == ["welcome", "ripen"]
    assert env.touches()[1].state == "sent" and enrollment_id > 0


def test_resume_refuses_a_suppressed_lead(env: Env, handoff_id: int) -> None:
    """Unsubscribed meanwhile: not enrolled, the handoff stays open."""
    env.store.leads.suppress("ada@example.com", "unsubscribe", "test", env.clock.now())
    with pytest.raises(Suppressed):
        service(env).resume(handoff_id, "ripen")
    assert env.store.handoffs.get(handoff_id).state == "open"


def test_resume_refuses_a_lead_already_in_that_sequence(env: Env, handoff_id: int) -> None:
    """Already active in ripen (enrolled in a race with the reply; enrolling is refused
    once the handoff exists): said so, nothing changes."""
    lead = env.store.leads.get("ada@example.com")
    assert lead is not None
    now = env.clock.now()
    with env.store.db.write() as conn:
        conn.execute(insert(Enrollment.__table__).values(
            lead_id=lead.id, sequence="ripen", state="active", stop_reason="", step_index=0,
            step_name="first", occurrence=0, touch_number=0, enrolled_at=now,
            updated_at=now, source="test"))
    with pytest.raises(AlreadyEnrolled, match="already active in 'ripen'"):
        service(env).resume(handoff_id, "ripen")
    assert env.store.handoffs.get(handoff_id).state == "open"
