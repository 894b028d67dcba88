"""Workers and their claims: registration, heartbeat, release on shutdown, the reaper, and
settling touches whose outcome was in doubt (a worker died mid-send) or done by hand (tasks).

A worker is dead when its heartbeat is stale, or when a daemon in the same pid namespace (same
host and boot id, daemon/heartbeat.py) saw its pid gone.
Its `claimed` touches are released for another worker (the next claim bumps the fence); its
`sending` touches are handed to the caller as in doubt and never guessed here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, false, insert, not_, or_, select, update

from engine.domain.lead import LeadInput
from engine.domain.states import RETRYABLE_STOPS, EnrollmentState, TouchState
from engine.domain.touch import Advance, Delivered, TouchRecord
from engine.errors import InvalidTransition, NotFound
from engine.store import events
from engine.store.db import Database
from engine.store.leads import lead_record, live_in, merge_lead_in, suppression_in
from engine.store.queue import CLAIMED, claim_of
from engine.store.tables import Enrollment, Lead, Touch, Worker
from engine.store.transitions import advance_in, record_outcome, set_touch

T, L, W = Touch.__table__, Lead.__table__, Worker.__table__
E = Enrollment.__table__
HELD = (TouchState.claimed.value, TouchState.sending.value)
LEASE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any lease


@dataclass(frozen=True)
class WorkerRow:
    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    boot_id: str = ""  # the pid namespace its pid belongs to ('' = unknown: never compared)


class WorkerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, name: str, host: str, pid: int, now: datetime,
                 boot_id: str = "") -> None:
        with self.db.write() as conn:
            conn.execute(delete(W).where(W.c.name == name))
            conn.execute(insert(W).values(name=name, host=host, pid=pid, started_at=now,
                                          heartbeat_at=now, boot_id=boot_id))

    def heartbeat(self, name: str, now: datetime, lease: timedelta) -> None:
        """Say this worker lives and extend the leases of the touches it holds."""
        with self.db.write() as conn:
            conn.execute(update(W).where(W.c.name == name).values(heartbeat_at=now))
            # Every held touch has a lease: saying so lets the (state, lease_until) index
            # serve this, instead of a scan of all touches on every beat.
            conn.execute(update(T).where(
                T.c.claimed_by == name, T.c.state.in_(HELD), T.c.retry_at.is_(None),
                T.c.lease_until > LEASE_EPOCH,
            ).values(lease_until=now + lease))

    def release(self, name: str, now: datetime) -> int:
        """On a clean stop: hand this worker's untouched claims back (same Message-IDs)."""
        with self.db.write() as conn:
            n = conn.execute(update(T).where(
                T.c.claimed_by == name, T.c.state == CLAIMED, T.c.retry_at.is_(None),
            ).values(retry_at=now, claimed_by="", lease_until=None)).rowcount
            conn.execute(delete(W).where(W.c.name == name))
        return n

    def workers(self) -> list[WorkerRow]:
        with self.db.read() as conn:
            return [WorkerRow(*r) for r in conn.execute(
                select(W.c.name, W.c.host, W.c.pid, W.c.started_at, W.c.heartbeat_at,
                       W.c.boot_id).order_by(W.c.name))]

    def reap(self, now: datetime, alive_since: datetime,
             dead: Collection[str] = ()) -> tuple[int, list[TouchRecord]]:
        """Release dead workers' claims; return (released, their in-doubt `sending` touches)."""
        dead = list(dead)
        with self.db.write() as conn:
            # A dead worker's row stays until its in-doubt touches are settled (deleted below
            # once it holds none): a reaper killed before settling leaves it recognisable, so
            # the next restart settles them at once instead of after their lease.
            live = list(conn.execute(select(W.c.name).where(
                W.c.heartbeat_at >= alive_since, W.c.name.not_in(dead))).scalars())
            orphan = not_(T.c.claimed_by.in_(live)) if live else T.c.claimed_by.isnot(None)
            gone = or_(T.c.lease_until < now, T.c.claimed_by.in_(dead) if dead else false())
            released = conn.execute(update(T).where(
                T.c.state == CLAIMED, T.c.retry_at.is_(None), orphan, gone,
            ).values(retry_at=now, claimed_by="", lease_until=None)).rowcount
            rows = conn.execute(select(T, L).join(L, L.c.id == T.c.lead_id).where(
                T.c.state == TouchState.sending.value, orphan, gone)).all()
            holders = select(T.c.claimed_by).where(T.c.state.in_(HELD))
            conn.execute(delete(W).where(
                or_(W.c.heartbeat_at < alive_since, W.c.name.in_(dead)),
                W.c.name.not_in(holders)))
        return released, [_record(r) for r in rows]

    # --- settling one touch by hand or after a crash ---------------------------------------

    def load(self, touch_id: int) -> tuple[str, TouchRecord]:
        """A touch's state and record (for tasks and in-doubt resolution)."""
        with self.db.read() as conn:
            row = conn.execute(select(T, L).join(L, L.c.id == T.c.lead_id)
                               .where(T.c.id == touch_id)).first()
        if row is None:
            raise NotFound(f"no touch with id {touch_id}")
        return row._mapping[T.c.state], _record(row)

    def settle(self, touch_id: int, fence: int, from_states: Collection[str], how: str,
               now: datetime, advance: Advance | None = None, by: str = "") -> None:
        """Move one touch out of doubt or out of a task.

        how: `sent` (it left: found in the Sent folder, or the operator says so), `resend`
        (claim again, same Message-ID and bytes), `hold` (unknown, for the operator), `done`
        (a task completed by `by`).
        """
        q = select(T).where(T.c.id == touch_id)
        with self.db.write() as conn:
            # Locked on PostgreSQL: a worker recording its 250 at this moment (queue.finish)
            # must not be overwritten by a `hold` decided on the state read before it.
            t = conn.execute(q.with_for_update() if self.db.is_postgres else q).first()
            if t is None:
                raise NotFound(f"no touch with id {touch_id}")
            if t.state not in from_states or t.fence != fence:
                raise InvalidTransition(
                    f"touch {touch_id} is {t.state}; only a touch that is "
                    f"{' or '.join(from_states)} can be marked {how}")
            _settle(conn, t, how, now, advance, by)

    def retry(self, touch_id: int, now: datetime, by: str = "",
              lead: LeadInput | None = None) -> None:
        """A failed touch made again on the next pass, its enrollment active again (the
        operator fixed the cause); `lead`'s fields are merged into the lead first."""
        q = select(T).where(T.c.id == touch_id)
        with self.db.write() as conn:
            t = conn.execute(q.with_for_update() if self.db.is_postgres else q).first()
            if t is None:
                raise NotFound(f"no touch with id {touch_id}")
            if t.state != TouchState.failed.value:
                raise InvalidTransition(f"touch {touch_id} is {t.state}; only a failed touch "
                                        "can be retried")
            _retry(conn, t, now, by)
            if lead is not None:
                merge_lead_in(conn, lead, now)


def _settle(conn: Any, t: Any, how: str, now: datetime, advance: Advance | None,
            by: str) -> None:
    base = {"touch_id": t.id, "step": t.step_name, "message_id": t.message_id}
    if how == "sent":
        record_outcome(conn, t, Delivered(0, f"marked sent ({by or 'Sent folder'})", now),
                       advance, now)
    elif how == "resend":
        set_touch(conn, t, state=TouchState.claimed.value, retry_at=now, claimed_by="",
                  lease_until=None)
        events.log(conn, "touch_in_doubt", now, t.lead_id, t.enrollment_id, **base,
                   action="resend", by=by)
    elif how == "hold":
        set_touch(conn, t, state=TouchState.unknown.value, lease_until=None)
        events.log(conn, "touch_in_doubt", now, t.lead_id, t.enrollment_id, **base,
                   action="hold")
    elif how == "done":
        set_touch(conn, t, state=TouchState.done.value, completed_by=by, sent_at=now)
        events.log(conn, "task_done", now, t.lead_id, t.enrollment_id, touch_id=t.id,
                   step=t.step_name, by=by)
        advance_in(conn, t, advance or Advance(None), now, counted=True)
    else:
        raise ValueError(f"unknown settlement {how!r}")


def _retry(conn: Any, t: Any, now: datetime, by: str) -> None:
    """Undo a failure that stopped the enrollment, once its cause is fixed: the touch waits
    as a retry due now (same Message-ID; no stored bytes, so it is rendered again) and the
    enrollment is active again. Refused when something else has happened to the lead since."""
    e = conn.execute(select(E.c.state, E.c.stop_reason, E.c.sequence)
                     .where(E.c.id == t.enrollment_id)).one()
    if e.state != EnrollmentState.stopped.value or e.stop_reason not in RETRYABLE_STOPS:
        raise InvalidTransition(
            f"touch {t.id} cannot be retried: its enrollment is {e.state}"
            f"{f' ({e.stop_reason})' if e.stop_reason else ''}, not stopped by this failure")
    email = conn.execute(select(L.c.email).where(L.c.id == t.lead_id)).scalar_one()
    suppressed = suppression_in(conn, email)
    if suppressed:
        raise InvalidTransition(f"touch {t.id} cannot be retried: the address is suppressed "
                                f"({suppressed})")
    again = live_in(conn, t.lead_id, e.sequence, other_than=t.enrollment_id)
    if again is not None:
        raise InvalidTransition(f"touch {t.id} cannot be retried: the lead is enrolled in "
                                f"{e.sequence} again (enrollment {again})")
    conn.execute(update(E).where(E.c.id == t.enrollment_id).values(
        state=EnrollmentState.active.value, stop_reason="", next_due_at=None, updated_at=now))
    set_touch(conn, t, state=TouchState.claimed.value, retry_at=now, claimed_by="",
              lease_until=None, attempts=0, smtp_code=None, raw=b"")
    events.log(conn, "touch_retry_requested", now, t.lead_id, t.enrollment_id, touch_id=t.id,
               step=t.step_name, by=by, error=t.error[:200])


def _record(row: Any) -> TouchRecord:
    m = row._mapping
    touch = {c.name: m[c] for c in T.c}
    lead = lead_record(_Row({c.name: m[c] for c in L.c}))
    return TouchRecord(claim=claim_of(touch), lead=lead)


class _Row:
    """Adapts a plain dict to the `._mapping` that lead_record reads."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping
