"""The due queue on SQLite: claims, the send states, fences, retries and the reaper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import insert, update

from engine.domain.lead import LeadInput
from engine.domain.progress import Next
from engine.domain.touch import (
    Advance,
    Claim,
    Delivered,
    DueEnrollment,
    Finished,
    Retry,
    SendContext,
    SendEmail,
    TouchPlan,
)
from engine.store import events
from engine.store.events import timeline
from engine.store.store import Store
from engine.store.tables import Enrollment, InboundMessage

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'q.db'}")
    s.db.upgrade()
    return s


def plan(due: DueEnrollment) -> TouchPlan:
    return TouchPlan(f"step{due.step_index}", "email", "", "sales",
                     f"<m.{due.id}.{due.step_index}@acme.test>")


def enroll(store: Store, email: str, due: datetime = NOW, seq: str = "s") -> int:
    out = store.leads.enroll([LeadInput(email)], seq, lambda _: Next(0, 0, due), NOW, "test")
    assert out[0].enrollment_id is not None
    return out[0].enrollment_id


def send(ctx: SendContext) -> SendEmail:
    return SendEmail(b"raw bytes", "sales@acme.test", ctx.lead.email, "Subject", "text")


def claim_one(store: Store, worker: str = "w1", at: datetime = NOW) -> Claim:
    claims = store.queue.claim_due(worker, ["s"], at, 10, LEASE, plan)
    assert len(claims) == 1
    return claims[0]


def test_claim_records_the_touch_and_empties_the_due_time(store: Store) -> None:
    """A claim inserts a claimed touch with its Message-ID and clears next_due_at."""
    eid = enroll(store, "a@x.test")
    claim = claim_one(store)
    assert (claim.enrollment_id, claim.fence) == (eid, 1)
    assert claim.message_id == f"<m.{eid}.0@acme.test>"
    [row] = store.reports.touches()
    assert (row.state, row.message_id) == ("claimed", claim.message_id)
    assert store.reports.enrollments()[0]["next_due_at"] is None


def test_only_due_steps_of_the_named_sequences_are_claimed(store: Store) -> None:
    """Later due times and other sequences stay in the queue."""
    enroll(store, "later@x.test", NOW + timedelta(minutes=5))
    enroll(store, "other@x.test", seq="other")
    assert store.queue.claim_due("w1", ["s"], NOW, 10, LEASE, plan) == []


def test_claims_come_oldest_due_first_up_to_the_limit(store: Store) -> None:
    """The batch takes the longest-waiting steps first."""
    for i in range(5):
        enroll(store, f"l{i}@x.test", NOW - timedelta(minutes=i))
    claims = store.queue.claim_due("w1", ["s"], NOW, 2, LEASE, plan)
    assert [c.planned_at for c in claims] == [NOW - timedelta(minutes=m) for m in (4, 3)]


def test_a_step_is_never_claimed_twice(store: Store) -> None:
    """Re-queuing a claimed step (a bug elsewhere) cannot create a second touch for it."""
    eid = enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    store.queue.finish(claim, Delivered(250, "ok", NOW), Advance(Next(1, 0, NOW)), NOW)
    with store.db.write() as conn:  # force the pointer back to the step already sent
        conn.execute(update(Enrollment.__table__).where(Enrollment.__table__.c.id == eid)
                     .values(step_index=0, next_due_at=NOW))
    assert store.queue.claim_due("w1", ["s"], NOW, 10, LEASE, plan) == []
    assert [t.state for t in store.reports.touches()] == ["sent"]
    assert store.reports.enrollments()[0]["stop_reason"] == "duplicate_step"


def test_begin_send_moves_the_touch_to_sending_with_its_bytes(store: Store) -> None:
    """Only after begin_send says `sending` (bytes stored) may SMTP start."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    begun = store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    assert isinstance(begun.decision, SendEmail)
    [row] = store.reports.touches()
    assert (row.state, row.attempts, row.subject) == ("sending", 1, "Subject")


def test_delivery_advances_the_enrollment(store: Store) -> None:
    """A 250 marks the touch sent and points the enrollment at its next step."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    nxt = NOW + timedelta(days=1)
    assert store.queue.finish(claim, Delivered(250, "ok", NOW), Advance(Next(1, 0, nxt)), NOW)
    [e] = store.reports.enrollments()
    assert (e["step_index"], e["next_due_at"], e["touch_number"]) == (1, nxt, 1)
    assert store.reports.touches()[0].sent_at == NOW


def test_the_last_step_finishes_the_enrollment(store: Store) -> None:
    """No next step: the enrollment is finished and leaves the queue."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    store.queue.finish(claim, Delivered(250, "ok", NOW), Advance(None), NOW)
    assert store.reports.enrollments()[0]["state"] == "finished"
    assert store.queue.next_wakeup(["s"]) is None


def test_a_stopped_enrollment_is_not_sent(store: Store) -> None:
    """Stopped between claim and send: the touch is skipped and nothing is decided."""
    eid = enroll(store, "a@x.test")
    claim = claim_one(store)
    with store.db.write() as conn:
        conn.execute(update(Enrollment.__table__).where(Enrollment.__table__.c.id == eid)
                     .values(state="stopped", stop_reason="manual"))
    begun = store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    assert begun.decision is None and begun.blocked == "enrollment stopped"
    assert store.reports.touches()[0].state == "skipped"


def test_a_suppressed_address_is_not_sent(store: Store) -> None:
    """Suppressed after the claim: skipped, and the lead's enrollments stop."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.leads.suppress("a@x.test", "unsubscribe", "test", NOW)
    begun = store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    assert begun.decision is None
    assert store.reports.touches()[0].state == "skipped"
    assert store.reports.enrollments()[0]["state"] == "stopped"


def test_a_human_reply_stops_the_send(store: Store) -> None:
    """A human reply recorded after enrollment: nothing more is sent to that lead."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    with store.db.write() as conn:
        conn.execute(insert(InboundMessage.__table__).values(
            mailbox="sales", folder="INBOX", uidvalidity=1, uid=1, message_id="<r@x>",
            from_addr="a@x.test", subject="Re", received_at=NOW, kind="human_reply",
            reason="", failed_recipients="", lead_id=claim.lead_id, touch_id=None,
            matched_by="sender", new_text="yes", raw=b""))
    begun = store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    assert begun.decision is None and begun.blocked == "the lead replied"
    assert store.reports.enrollments()[0]["stop_reason"] == "replied"


def test_a_paused_enrollment_defers_its_touch(store: Store) -> None:
    """Paused (out of office) after the claim: the touch waits until the pause ends."""
    eid = enroll(store, "a@x.test")
    claim = claim_one(store)
    until = NOW + timedelta(days=3)
    with store.db.write() as conn:
        conn.execute(update(Enrollment.__table__).where(Enrollment.__table__.c.id == eid)
                     .values(state="paused", paused_until=until))
    assert store.queue.begin_send(claim, "w1", NOW, LEASE, send).decision is None
    assert store.queue.next_wakeup(["s"]) == until
    assert store.reports.touches()[0].state == "claimed"


def test_a_retry_reuses_the_message_id_and_bytes_with_a_new_fence(store: Store) -> None:
    """A 4xx puts the touch back; the retry claim bumps the fence and keeps the bytes."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    store.queue.finish(claim, Retry(NOW + timedelta(minutes=1), 451, "later"), None, NOW)
    assert store.queue.claim_retries("w2", ["s"], NOW, 10, LEASE) == []
    [again] = store.queue.claim_retries("w2", ["s"], NOW + timedelta(minutes=1), 10, LEASE)
    assert (again.touch_id, again.fence, again.message_id) == (claim.touch_id, 2, claim.message_id)
    begun = store.queue.begin_send(again, "w2", NOW, LEASE, lambda ctx: send(ctx))
    assert begun.context is not None and begun.context.raw == b"raw bytes"


def test_a_stale_fence_cannot_record_an_outcome(store: Store) -> None:
    """A worker whose claim was retaken cannot mark the touch sent."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    store.queue.finish(claim, Retry(NOW, 451, "later"), None, NOW)
    store.queue.claim_retries("w2", ["s"], NOW, 10, LEASE)
    assert not store.queue.finish(claim, Delivered(250, "ok", NOW), Advance(None), NOW)
    assert store.queue.begin_send(claim, "w1", NOW, LEASE, send).blocked == "claim lost"


def test_the_reaper_releases_claims_of_a_dead_worker(store: Store) -> None:
    """Claimed (not yet sending) touches of a worker with a stale heartbeat go back."""
    enroll(store, "a@x.test")
    store.workers.register("w1", "host", 1, NOW)
    claim_one(store)
    later = NOW + timedelta(minutes=5)
    released, doubts = store.workers.reap(later, later - timedelta(seconds=30))
    assert (released, doubts) == (1, [])
    [again] = store.queue.claim_retries("w2", ["s"], later, 10, LEASE)
    assert again.fence == 2


def test_the_reaper_leaves_a_live_worker_alone(store: Store) -> None:
    """A worker that heartbeats keeps its claims, however long the send takes."""
    enroll(store, "a@x.test")
    store.workers.register("w1", "host", 1, NOW)
    claim_one(store)
    later = NOW + timedelta(minutes=5)
    store.workers.heartbeat("w1", later, LEASE)
    assert store.workers.reap(later, later - timedelta(seconds=30)) == (0, [])


def test_the_reaper_reports_sending_touches_as_in_doubt(store: Store) -> None:
    """A dead worker's `sending` touch is returned to decide on, not changed."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    _, doubts = store.workers.reap(NOW, NOW, dead=["w1"])
    assert [d.claim.touch_id for d in doubts] == [claim.touch_id]
    assert store.reports.touches()[0].state == "sending"


def test_mailbox_pause_and_sent_counts(store: Store) -> None:
    """Pauses are shared through the database; limits count sent touches per mailbox."""
    enroll(store, "a@x.test")
    claim = claim_one(store)
    store.queue.begin_send(claim, "w1", NOW, LEASE, send)
    store.queue.finish(claim, Delivered(250, "ok", NOW), Advance(None), NOW)
    assert store.mailboxes.sent_counts("sales", NOW + timedelta(seconds=30)) == (1, 1)
    assert store.mailboxes.sent_counts("sales", NOW + timedelta(hours=2)) == (0, 1)
    store.mailboxes.pause("sales", NOW + timedelta(hours=1), "550 5.4.5 quota")
    assert store.mailboxes.paused(NOW) == {"sales": (NOW + timedelta(hours=1), "550 5.4.5 quota")}
    assert store.mailboxes.paused(NOW + timedelta(hours=2)) == {}


def test_a_batch_of_finishes_keeps_each_touchs_events_and_drops_a_failed_ones(
        store: Store) -> None:
    """Finishes written together (send_writes) on SQLite: one transaction for the batch,
    its events written together at its end; a touch whose finish raises is redone alone and
    leaves neither its writes nor its events, while the others' are kept, in order."""
    for email in ("a@x.test", "b@x.test", "c@x.test"):
        enroll(store, email)
    claims = store.queue.claim_due("w1", ["s"], NOW, 10, LEASE, plan)
    begun = store.queue.send_writes(claims, "w1", NOW, LEASE, send)
    assert [isinstance(r.decision, SendEmail) for r in begun] == [True, True, True]
    ok = Delivered(250, "ok", NOW)
    broken = Advance(None, follow_on=object())  # type: ignore[arg-type] - raises mid-finish
    results = store.queue.send_writes([Finished(claims[0], ok, Advance(None)),
                                       Finished(claims[1], ok, broken),
                                       Finished(claims[2], ok, Advance(None))],
                                      "w1", NOW, LEASE, send)
    assert results[0] is True and results[2] is True and isinstance(results[1], Exception)
    assert [t.state for t in store.reports.touches()] == ["sent", "sending", "sent"]
    with store.db.read() as conn:
        kinds = [[e.kind for e in timeline(conn, c.lead_id)] for c in claims]
    assert kinds[1] == ["enrolled"]
    assert kinds[0] == kinds[2] == ["enrolled", "touch_sent", "enrollment_finished"]


def test_events_gathered_in_a_block_are_one_insert_at_its_end(store: Store) -> None:
    """events.gathered: rows logged inside (log and log_many, nested blocks too) are written
    in the order logged by one statement when the outer block ends; a block that raises
    writes none of them."""
    lead = store.leads.enroll([LeadInput("a@x.test")], "s", lambda _: Next(0, 0, NOW), NOW,
                              "test")[0].lead_id
    inserts: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if statement.startswith("INSERT INTO event"):
            inserts.append(statement)
    sa_event.listen(store.db.engine, "before_cursor_execute", count)
    with store.db.write() as conn, events.gathered(conn):
        events.log(conn, "one", NOW, lead)
        events.log_many(conn, [{"kind": "two", "at": NOW, "lead_id": lead}])
        with events.gathered(conn):
            events.log(conn, "three", NOW, lead)
        assert inserts == []
    assert len(inserts) == 1
    with pytest.raises(RuntimeError), store.db.write() as conn, events.gathered(conn):
        events.log(conn, "four", NOW, lead)
        raise RuntimeError("undone")
    with store.db.read() as conn:
        assert [e.kind for e in timeline(conn, lead)] == ["enrolled", "one", "two", "three"]
