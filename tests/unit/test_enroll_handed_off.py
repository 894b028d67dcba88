"""A lead who replied is not enrolled again while a rep works them (open or claimed handoff);
once the handoff is closed, or the rep puts the lead back into nurture, enrolling works."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, update

from engine.errors import HandedOff
from engine.services.handoff import Handoffs
from engine.store.tables import Enrollment, Handoff
from tests.servers.engine_env import Env, make_env, sequence

E, H = Enrollment.__table__, Handoff.__table__


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path, [sequence(), sequence("ripen")])


def replied(env: Env, email: str = "ada@example.com") -> int:
    """The lead is enrolled, replies, and is handed off: the handoff's id."""
    lead_id = env.enroll(email).lead_id
    now = env.clock.now()
    with env.store.db.write() as conn:
        conn.execute(update(E).values(state="handed_off", stop_reason="replied",
                                      next_due_at=None))
        return int(conn.execute(insert(H).returning(H.c.id).values(
            lead_id=lead_id, sequence="welcome", rep="", state="open", outcome="", note="",
            created_at=now)).scalar_one())


def handoffs(env: Env) -> Handoffs:
    return Handoffs(env.store.handoffs, env.catalog, env.clock, "UTC", ("sam",))


def test_enrolling_a_lead_with_an_open_handoff_is_refused(env: Env) -> None:
    """Same sequence or another: HandedOff names the handoff and how to enroll later."""
    hid = replied(env)
    for seq in ("welcome", "ripen"):
        with pytest.raises(HandedOff) as caught:
            env.enroll("Ada@Example.com", seq)
        assert f"handoff {hid} open" in caught.value.message
        assert "closed" in caught.value.message
    assert [e["state"] for e in env.store.reports.enrollments()] == ["handed_off"]


def test_a_claimed_handoff_refuses_enrolling_too(env: Env) -> None:
    """The rep has claimed it: still refused, and the message says who works the lead."""
    hid = replied(env)
    handoffs(env).claim(hid, "sam")
    with pytest.raises(HandedOff, match="claimed by sam"):
        env.enroll("ada@example.com")


def test_a_csv_import_rejects_the_row_of_a_lead_with_a_rep(env: Env) -> None:
    """Import: that row is rejected with the reason; the other rows are enrolled."""
    replied(env)
    report = env.enroller.enroll_rows("ripen", [(2, {"email": "ada@example.com"}),
                                                (3, {"email": "bob@example.com"})], "csv")
    assert report.enrolled == 1
    [rejected] = report.rejected
    assert (rejected.row, rejected.email) == (2, "ada@example.com")
    assert rejected.reason.startswith("replied, with a rep (handoff")


def test_after_the_handoff_is_closed_enrolling_works_again(env: Env) -> None:
    """Closed as not now: the lead can be enrolled (e.g. a later form post)."""
    hid = replied(env)
    handoffs(env).close(hid, "not-now", by="sam")
    assert env.enroll("ada@example.com", "ripen").status == "enrolled"


def test_the_reps_back_to_nurture_still_works(env: Env) -> None:
    """The rep's resume (the one way in while the handoff is live) enrolls the lead."""
    hid = replied(env)
    view, eid = handoffs(env).resume(hid, "ripen", by="sam")
    assert view.state == "closed" and view.outcome == "renurtured"
    assert [(e["id"], e["sequence"], e["state"]) for e in env.store.reports.enrollments()
            if e["sequence"] == "ripen"] == [(eid, "ripen", "active")]
