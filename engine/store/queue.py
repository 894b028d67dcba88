"""The due queue: claim due steps, begin a send, record its outcome, advance the enrollment.

Enrollment.next_due_at is the queue (partial index on active rows). A claim inserts the Touch
row (state claimed, Message-ID minted, fence 1) and clears next_due_at in one transaction;
the unique (enrollment, step, occurrence) makes a second copy of a step impossible. Every
later write to a touch names the fence it was claimed with, so a worker that lost its claim
(declared dead, then woke up) cannot overwrite a newer attempt. The states are drawn in
docs/send-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    Connection,
    Integer,
    Select,
    any_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.domain.progress import FIND_NEXT
from engine.domain.states import EnrollmentState, InboundKind, TouchState
from engine.domain.touch import (
    Advance,
    Begun,
    Claim,
    Decision,
    Defer,
    Delivered,
    DueEnrollment,
    Fail,
    Finished,
    NoStep,
    OpenTask,
    Outcome,
    PreviousEmail,
    SendContext,
    SendEmail,
    Skip,
    TouchPlan,
)
from engine.store import events, replan
from engine.store.db import Database
from engine.store.group_commit import transaction_lost
from engine.store.inbound import resume_paused
from engine.store.leads import lead_record, stop, stop_live
from engine.store.tables import Enrollment, InboundMessage, Lead, Suppression, Touch
from engine.store.transitions import advance_in, record_outcome, set_touch

T, E, L = Touch.__table__, Enrollment.__table__, Lead.__table__
S, IB = Suppression.__table__, InboundMessage.__table__
# Literal (not bound) so the planner can match the partial index `WHERE state = 'active'`.
ACTIVE = literal_column("'active'")
CLAIMED = literal_column("'claimed'")
# A step due while an earlier step's touch still waits is looked at again this long after
# that touch's retry time (or now): time for the retry to go out first.
BEHIND_EARLIER = timedelta(minutes=1)
IN_FLIGHT = (TouchState.claimed.value, TouchState.sending.value, TouchState.open.value,
             TouchState.unknown.value)

# The touch with everything begin_send re-checks, in one round trip: its enrollment's state,
# its lead, the address's suppression and whether the lead replied since enrolling.
_REPLIED = exists().where(
    IB.c.lead_id == T.c.lead_id, IB.c.kind == InboundKind.human_reply.value,
    IB.c.received_at >= E.c.enrolled_at,
).label("replied")
_BEGIN = (
    select(T, E.c.state.label("e_state"), E.c.paused_until.label("e_paused_until"),
           E.c.enrolled_at.label("e_enrolled_at"), S.c.reason.label("suppressed"), _REPLIED,
           *[c.label(f"l_{c.name}") for c in L.c])
    .join(E, E.c.id == T.c.enrollment_id).join(L, L.c.id == T.c.lead_id)
    .outerjoin(S, S.c.email == L.c.email).where(T.c.id == bindparam("tid"))
)
_TOUCH = select(T).where(T.c.id == bindparam("tid"))

# A new touch's columns in three parts: its step (one value per touch), its claim (one value
# per batch: claimed_at, claimed_by, lease_until) and _FRESH (the same for every new touch).
# Only the first part is sent per touch; binding all 27 columns of 500 touches one by one cost
# more than the insert itself (bench/due_claim.py).
_STEP_COLUMNS = ("enrollment_id", "lead_id", "sequence", "step_name", "step_index",
                 "occurrence", "channel", "task_kind", "mailbox", "message_id", "touch_number",
                 "planned_at")
_FRESH = {
    "state": TouchState.claimed.value, "fence": 1, "attempts": 0, "deferrals": 0,
    "in_reply_to": "", "references": "", "subject": "", "body_text": "", "retry_at": None,
    "sent_at": None, "smtp_code": None, "smtp_response": "", "error": "", "completed_by": "",
    "raw": b"",
}
_BATCH_COLUMNS = ("claimed_at", "claimed_by", "lease_until", *_FRESH)
_INSERT_COLUMNS = ", ".join(f'"{c}"' for c in (*_STEP_COLUMNS, *_BATCH_COLUMNS))
_PG_TYPES = {"INTEGER": "integer", "VARCHAR": "text", "DATETIME": "timestamptz",
             "BLOB": "bytea"}


def _pg_type(column: str) -> str:
    return _PG_TYPES[str(T.c[column].type.compile())]


# A step that already has a touch is left out of the batch insert (no savepoint to undo) and
# placed again one by one (_insert_one_by_one).
_SKIP_TAKEN = "ON CONFLICT (enrollment_id, step_name, occurrence) DO NOTHING"
# PostgreSQL: the step columns as one array each (unnest; a multi-row VALUES list would bind
# thousands of parameters and spend more time parsing than inserting), the rest once.
_PG_INSERT_TOUCHES = text(
    "INSERT INTO touch ({}) SELECT u.*, {} FROM unnest({}) AS u {} RETURNING enrollment_id, id"
    .format(_INSERT_COLUMNS,
            ", ".join(f"CAST(:{c} AS {_pg_type(c)})" for c in _BATCH_COLUMNS),
            ", ".join(f"CAST(:{c} AS {_pg_type(c)}[])" for c in _STEP_COLUMNS), _SKIP_TAKEN))
# SQLite: one prepared statement run per touch by the driver (executemany, no RETURNING: the
# new ids are those above the largest before, this transaction being the only writer).
_SQLITE_INSERT_TOUCHES = "INSERT INTO touch ({}) VALUES ({}) {}".format(
    _INSERT_COLUMNS, ", ".join("?" * (len(_STEP_COLUMNS) + len(_BATCH_COLUMNS))), _SKIP_TAKEN)
_SQLITE_LAST_TOUCH = "SELECT coalesce(max(id), 0) FROM touch"
_SQLITE_TOUCHES_AFTER = "SELECT enrollment_id, id FROM touch WHERE id > ?"

# A touch for the due step; or none: finished (NoStep, None) or held until later (Defer).
# The mailbox's room under its limits, asked with the claim's connection (store/mailboxes).
Budget = Callable[[Connection, int], int]
Planner = Callable[[DueEnrollment], TouchPlan | NoStep | Defer | None]
Decider = Callable[[SendContext], Decision]


class QueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        pg = db.is_postgres
        # Built once: constructing a statement costs about as much as running it.
        self._begin_stmt = _BEGIN.with_for_update(of=[T, E]) if pg else _BEGIN
        self._touch_stmt = _TOUCH.with_for_update() if pg else _TOUCH
        # The batch's enrollment ids: one array on PostgreSQL (one statement text, prepared
        # once), an expanded IN list on SQLite.
        ids = bindparam("ids", type_=ARRAY(Integer)) if pg else bindparam("ids", expanding=True)
        self._mark_claimed = update(E).where(E.c.id == any_(ids) if pg else E.c.id.in_(ids)) \
            .values(next_due_at=None, updated_at=bindparam("now"))
        self._in_flight = select(T.c.enrollment_id, T.c.step_name, T.c.occurrence,
                                 T.c.retry_at).where(
            T.c.enrollment_id == any_(ids) if pg else T.c.enrollment_id.in_(ids),
            T.c.state.in_(IN_FLIGHT))
        self._sqlite_time = T.c.planned_at.type.bind_processor(db.engine.dialect)

    def _skip_locked(self, q: Select[Any]) -> Select[Any]:
        return q.with_for_update(skip_locked=True) if self.db.is_postgres else q

    def _locked(self, q: Select[Any]) -> Select[Any]:
        return q.with_for_update() if self.db.is_postgres else q

    # --- claiming ------------------------------------------------------------------------

    def claim_due(
        self, worker: str, sequences: Collection[str], now: datetime, limit: int,
        lease: timedelta, plan: Planner, budget: Budget | None = None,
    ) -> list[Claim]:
        """Claim up to `limit` due steps of these sequences, oldest due first (and no more
        than `budget(conn, limit)`: the mailbox's limits, counted in this transaction)."""
        if not sequences or limit <= 0:
            return []
        with self.db.write() as conn:
            if budget is not None and (limit := budget(conn, limit)) <= 0:
                return []
            # Out-of-office pauses that have ended: active again, due as before (store/inbound).
            resume_paused(conn, list(sequences), now, self.db.is_postgres)
            due = [_due(conn, r) for r in conn.execute(self._skip_locked(
                select(*_DUE_COLUMNS)
                # SQLite: `sequence || ''` keeps the planner off the sequence index: walking
                # the due index in time order reads ~limit rows; the sequence index would read
                # and sort every enrollment of the sequence (0.4 s at a million). PostgreSQL
                # knows the column's statistics but not the expression's: with `|| ''` it
                # guesses 0.5 % match and bitmap-scans every due row then sorts (100 ms at a
                # million, bench/due_claim.py); plain IN lets it walk the due index (5 ms).
                .where(E.c.state == ACTIVE, E.c.next_due_at <= now,
                       (E.c.sequence if self.db.is_postgres else E.c.sequence.concat(""))
                       .in_(list(sequences)))
                .order_by(E.c.next_due_at).limit(limit)
            ))]
            if not due:
                return []
            return self._claim_in(conn, worker, due, now, lease, plan)

    def _claim_in(
        self, conn: Connection, worker: str, due: list[DueEnrollment], now: datetime,
        lease: timedelta, plan: Planner,
    ) -> list[Claim]:
        ids = [d.id for d in due]
        conn.execute(self._mark_claimed, {"ids": ids, "now": now})
        # An enrollment resumed while its touch still waits (e.g. deferred over a pause)
        # must not get a second touch: the waiting one carries on and advances it. A touch
        # of an earlier step still waiting (a soft bounce's retry, an operator's retry) goes
        # first: this step is due again just after it, never dropped (the waiting touch's
        # outcome does not advance an enrollment that has moved past its step).
        waiting = {w.enrollment_id: w for w in conn.execute(self._in_flight, {"ids": ids})}
        rows, by_id = [], {d.id: d for d in due}
        for d in due:
            if (w := waiting.get(d.id)) is not None:
                # (A row with no step name, from before 0004, cannot have its own touch in
                # flight: a claim names it. So its waiting touch is an earlier step's.)
                if (w.step_name, w.occurrence) != (d.step_name, d.occurrence):
                    replan.settle(conn, d, Defer(max(w.retry_at or now, now) + BEHIND_EARLIER,
                                                 f"waits for step '{w.step_name}'"), now)
                continue
            p = plan(d)
            if isinstance(p, TouchPlan):
                rows.append(_new_touch(d, p))
                if replan.moved(d, p):  # an edit moved it, or a row from before step names
                    replan.follow(conn, d, p, now)
            else:
                replan.settle(conn, d, p, now)
        batch = {"claimed_at": now, "claimed_by": worker, "lease_until": now + lease, **_FRESH}
        return [claim_of(r) for r in self._insert_touches(conn, rows, batch, now, plan, by_id)]

    def _insert_touches(
        self, conn: Connection, rows: list[dict[str, Any]], batch: dict[str, Any],
        now: datetime, plan: Planner, due: dict[int, DueEnrollment],
    ) -> list[dict[str, Any]]:
        """The new touches (step columns `rows`, claim columns `batch`), with their ids."""
        if not rows:
            return []
        ids = self._insert_batch(conn, rows, batch)
        made = [{**batch, **r, "id": ids[r["enrollment_id"]]} for r in rows
                if r["enrollment_id"] in ids]
        taken = [{**batch, **r} for r in rows if r["enrollment_id"] not in ids]
        return made + self._insert_one_by_one(conn, taken, now, plan, due) if taken else made

    def _insert_batch(self, conn: Connection, rows: list[dict[str, Any]],
                      batch: dict[str, Any]) -> dict[int, int]:
        """One statement for the batch: enrollment id -> new touch id (one touch each), for
        the touches whose step had none yet."""
        if self.db.is_postgres:
            arrays = {c: [r[c] for r in rows] for c in _STEP_COLUMNS}
            return dict(conn.execute(_PG_INSERT_TOUCHES, {**arrays, **batch}).all())
        fixed = self._sqlite_values(batch[c] for c in _BATCH_COLUMNS)
        last = conn.exec_driver_sql(_SQLITE_LAST_TOUCH).scalar()
        conn.exec_driver_sql(_SQLITE_INSERT_TOUCHES, [
            self._sqlite_values(r[c] for c in _STEP_COLUMNS) + fixed for r in rows])
        return dict(conn.exec_driver_sql(_SQLITE_TOUCHES_AFTER, (last,)).all())

    def _sqlite_values(self, values: Iterable[Any]) -> tuple[Any, ...]:
        """Datetimes as SQLAlchemy writes them to SQLite (the driver is called directly)."""
        t = self._sqlite_time
        return tuple(t(v) if isinstance(v, datetime) else v for v in values)

    def _insert_one_by_one(
        self, conn: Connection, rows: list[dict[str, Any]], now: datetime, plan: Planner,
        due: dict[int, DueEnrollment],
    ) -> list[Any]:
        """A step already has a touch (an edit put it back after the lead had it): place
        the enrollment again after the steps it had; if that fails too, stop it, loudly."""
        out = []
        for r in rows:
            if (i := _try_insert(conn, r)) is not None:
                out.append({**r, "id": i})
                continue
            d = due[r["enrollment_id"]]
            p = plan(replace(d, step_name=FIND_NEXT))
            if not isinstance(p, TouchPlan):
                replan.settle(conn, d, p, now)
                continue
            r = {**r, **_plan_columns(d, p)}
            if (i := _try_insert(conn, r)) is None:
                reason = f"step '{r['step_name']}' already has a touch"
                stop(conn, r["lead_id"], [r["enrollment_id"]], "duplicate_step", now, reason)
                continue
            replan.follow(conn, d, p, now)
            out.append({**r, "id": i})
        return out

    def claim_retries(
        self, worker: str, sequences: Collection[str], now: datetime, limit: int,
        lease: timedelta, budget: Budget | None = None,
    ) -> list[Claim]:
        """Retake touches waiting for a retry (backoff, deferral, a dead worker's claim)."""
        if not sequences or limit <= 0:
            return []
        with self.db.write() as conn:
            if budget is not None and (limit := budget(conn, limit)) <= 0:
                return []
            ids = conn.execute(self._skip_locked(
                select(T.c.id).where(T.c.state == CLAIMED, T.c.retry_at <= now,
                                     T.c.sequence.in_(list(sequences)))
                .order_by(T.c.retry_at).limit(limit)
            )).scalars().all()
            if not ids:
                return []
            conn.execute(update(T).where(T.c.id.in_(ids)).values(
                fence=T.c.fence + 1, claimed_by=worker, claimed_at=now,
                lease_until=now + lease, retry_at=None,
            ))
            rows = conn.execute(select(T).where(T.c.id.in_(ids)).order_by(T.c.id))
            return [claim_of(r._mapping) for r in rows]

    def next_wakeup(self, sequences: Collection[str]) -> datetime | None:
        """The earliest moment something of these sequences falls due (step or retry)."""
        if not sequences:
            return None
        seqs = list(sequences)
        with self.db.read() as conn:
            step = conn.execute(select(func.min(E.c.next_due_at)).where(
                E.c.state == ACTIVE, E.c.sequence.in_(seqs))).scalar()
            retry = conn.execute(select(func.min(T.c.retry_at)).where(  # the partial index
                T.c.state == CLAIMED, T.c.retry_at.is_not(None), T.c.sequence.in_(seqs))
            ).scalar()
        times = [t for t in (step, retry) if t is not None]
        return min(times) if times else None

    # --- sending -------------------------------------------------------------------------

    def begin_send(
        self, claim: Claim, worker: str, now: datetime, lease: timedelta, decide: Decider
    ) -> Begun:
        """Re-check the enrollment under lock, let `decide` choose, record the choice.

        A SendEmail decision leaves the touch `sending` with its bytes stored: only then may
        the caller open the SMTP transaction.
        """
        begun = self.send_writes([claim], worker, now, lease, decide)[0]
        return _raised(begun)  # type: ignore[return-value] - a Claim's result is a Begun

    def send_writes(
        self, items: Sequence[Claim | Finished], worker: str, now: datetime, lease: timedelta,
        decide: Decider,
    ) -> list[Begun | bool | Exception]:
        """Touches begun (a Claim: begin_send) and finished (Finished: finish) in one
        transaction, one durable commit on SQLite: a connection's next touch is begun while
        its last one is recorded. One result per item, in order; a touch's error is its
        result alone (see _each_in_one). Nothing begun here may reach SMTP before this
        returns (the commit)."""
        begin = partial(self._begin_in, worker=worker, now=now, lease=lease, decide=decide)
        finish = partial(self._finish_in, now=now)
        return self._each_in_one(items, lambda conn, item: (
            finish(conn, item) if isinstance(item, Finished) else begin(conn, item)))

    def _each_in_one(self, items: Sequence[Any], work: Callable[[Connection, Any], R],
                     ) -> list[R | Exception]:
        """`work(conn, item)` for each item, in one transaction on SQLite. If one raises,
        the lot is undone and done again with each item in a savepoint of its own: its error
        is its result and undoes its writes alone (a savepoint per item costs two statements,
        and errors are rare). On PostgreSQL one transaction per item, as ever: a transaction
        holding several touches' row locks would deadlock with the heartbeat's lease update
        (which locks all of a worker's touches, in its own order) and with inbound mail;
        PostgreSQL scales with more workers instead."""
        if self.db.is_postgres or len(items) == 1:
            return [_alone(self.db, work, item) for item in items]
        try:
            with self.db.write() as conn, events.gathered(conn):
                return [work(conn, item) for item in items]
        except Exception:  # noqa: BLE001 - again, one savepoint each
            pass
        with self.db.write() as conn:
            return [_each(conn, partial(work, conn, item)) for item in items]

    def _begin_in(self, conn: Connection, claim: Claim, worker: str, now: datetime,
                  lease: timedelta, decide: Decider) -> Begun:
        t = conn.execute(self._begin_stmt, {"tid": claim.touch_id}).first()
        if t is None or (t.state, t.fence, t.claimed_by) != (
            TouchState.claimed.value, claim.fence, worker
        ):
            return Begun(None, None, "claim lost")
        blocked = self._blocked(conn, t, now)
        if blocked:
            return Begun(None, None, blocked)
        ctx = SendContext(
            claim, lead_record(t, "l_"), t.e_enrolled_at,
            lambda: _previous_email(conn, t.enrollment_id, t.id),
            bytes(t.raw), t.subject, t.body_text, t.in_reply_to, t.references,
        )
        decision = decide(ctx)
        self._apply(conn, t, decision, now, lease)
        return Begun(ctx, decision)

    def _blocked(self, conn: Connection, t: Any, now: datetime) -> str:
        """Why this touch must not go out now ('' when it may); records what follows."""
        if t.e_state == EnrollmentState.paused.value:
            until = t.e_paused_until or now + timedelta(hours=1)
            set_touch(conn, t, state=TouchState.claimed.value, retry_at=until, claimed_by="",
                      lease_until=None)
            return f"enrollment paused until {until.isoformat()}"
        reason = ""
        if t.e_state != EnrollmentState.active.value:
            reason = f"enrollment {t.e_state}"
        elif t.suppressed:
            reason = f"suppressed ({t.suppressed})"
            stop_live(conn, t.lead_id, "suppressed", now)
        elif t.replied:
            reason = "the lead replied"
            stop(conn, t.lead_id, [t.enrollment_id], "replied", now, reason)
        if reason:
            set_touch(conn, t, state=TouchState.skipped.value, error=reason, lease_until=None,
                      raw=b"")
            events.log(conn, "touch_skipped", now, t.lead_id, t.enrollment_id, touch_id=t.id,
                       step=t.step_name, reason=reason)
        return reason

    def _apply(
        self, conn: Connection, t: Any, decision: Decision, now: datetime, lease: timedelta
    ) -> None:
        if isinstance(decision, SendEmail):
            set_touch(conn, t, state=TouchState.sending.value, attempts=t.attempts + 1,
                      raw=decision.raw, subject=decision.subject, body_text=decision.text,
                      in_reply_to=decision.in_reply_to, references=decision.references,
                      lease_until=now + lease, retry_at=None)
        elif isinstance(decision, Skip):
            set_touch(conn, t, state=TouchState.skipped.value, error=decision.reason,
                      lease_until=None, raw=b"")
            events.log(conn, "touch_skipped", now, t.lead_id, t.enrollment_id, touch_id=t.id,
                       step=t.step_name, reason=decision.reason)
            advance_in(conn, t, decision.advance, now, counted=False)
        elif isinstance(decision, OpenTask):
            set_touch(conn, t, state=TouchState.open.value, body_text=decision.note,
                      lease_until=None)
            events.log(conn, "task_opened", now, t.lead_id, t.enrollment_id, touch_id=t.id,
                       step=t.step_name, task_kind=t.task_kind)
        elif isinstance(decision, Fail):
            set_touch(conn, t, state=TouchState.failed.value, error=decision.reason,
                      lease_until=None, raw=b"")
            events.log(conn, "touch_failed", now, t.lead_id, t.enrollment_id, touch_id=t.id,
                       step=t.step_name, error=decision.reason)
            stop(conn, t.lead_id, [t.enrollment_id], "touch_failed", now, decision.reason)
        elif isinstance(decision, Defer):
            set_touch(conn, t, state=TouchState.claimed.value, retry_at=decision.until,
                      claimed_by="", lease_until=None)

    def finish(self, claim: Claim, outcome: Outcome, advance: Advance | None,
               now: datetime, halt: str = "") -> bool:
        """Record the SMTP outcome of a `sending` touch; False if the claim was lost.

        A 250 is recorded even if a reaper meanwhile held the touch as `unknown` or handed it
        back for a resend not yet claimed (same fence): it did leave, and recording it here
        keeps an operator from sending it twice. `halt`: the enrollment cannot go on (its next
        step's time cannot be computed): stopped with that reason, the touch still sent.
        """
        return _raised(self._each_in_one([Finished(claim, outcome, advance, halt)],
                                         partial(self._finish_in, now=now))[0])

    def _finish_in(self, conn: Connection, f: Finished, now: datetime) -> bool:
        t = conn.execute(self._touch_stmt, {"tid": f.claim.touch_id}).first()
        if t is None or t.fence != f.claim.fence or not (
            t.state == TouchState.sending.value
            or (isinstance(f.outcome, Delivered) and _reaped(t))
        ):
            return False
        if f.halt:
            stop(conn, t.lead_id, [t.enrollment_id], "schedule_error", now, f.halt)
        record_outcome(conn, t, f.outcome, None if f.halt else f.advance, now)
        return True

    def give_back(self, claim: Claim, worker: str, now: datetime, retry_at: datetime | None,
                  reason: str) -> bool:
        """A claimed touch that broke before SMTP (an error, not a decision): waiting again
        until `retry_at` (an attempt used, a new fence), or failed and its enrollment stopped
        when `retry_at` is None. False if this worker no longer holds the claim."""
        with self.db.write() as conn:
            t = conn.execute(self._touch_stmt, {"tid": claim.touch_id}).first()
            if t is None or (t.state, t.fence, t.claimed_by) != (
                    TouchState.claimed.value, claim.fence, worker):
                return False
            if retry_at is None:
                self._apply(conn, t, Fail(reason), now, timedelta(0))
            else:
                set_touch(conn, t, claimed_by="", lease_until=None, retry_at=retry_at,
                          attempts=t.attempts + 1, error=reason[:500], fence=t.fence + 1)
            return True

    def hand_back(self, claims: Collection[Claim], worker: str, now: datetime) -> int:
        """Claims this worker will not start (it is stopping): due again for any worker now,
        with a new fence; their Message-IDs are kept."""
        fences = {c.touch_id: c.fence for c in claims}
        if not fences:
            return 0
        with self.db.write() as conn:
            rows = conn.execute(select(T.c.id, T.c.fence).where(
                T.c.id.in_(list(fences)), T.c.state == CLAIMED, T.c.claimed_by == worker,
                T.c.retry_at.is_(None))).all()
            mine = [i for i, fence in rows if fences[i] == fence]
            if mine:
                conn.execute(update(T).where(T.c.id.in_(mine)).values(
                    claimed_by="", lease_until=None, retry_at=now, fence=T.c.fence + 1))
            return len(mine)


R = TypeVar("R")


def _each(conn: Connection, work: Callable[[], R]) -> R | Exception:
    """One touch's part of a batch, in a savepoint: its error is returned, its writes undone.
    An error after which SQLite undid the whole transaction is raised: the touches before
    it in the batch lost their writes too, and must not be told otherwise."""
    try:
        with conn.begin_nested(), events.gathered(conn):
            return work()
    except Exception as exc:  # noqa: BLE001 - that touch's result; the others go on
        if transaction_lost(conn):
            raise
        return exc


def _alone(db: Database, work: Callable[[Connection, Any], R], item: Any) -> R | Exception:
    """One item's work in a transaction of its own: its error is its result."""
    try:
        with db.write() as conn, events.gathered(conn):
            return work(conn, item)
    except Exception as exc:  # noqa: BLE001 - that touch's result; the others go on
        return exc


def _raised(result: R | Exception) -> R:
    if isinstance(result, Exception):
        raise result
    return result


def _reaped(t: Any) -> bool:
    """Taken from its worker by a reaper after it went `sending`, and not yet retaken."""
    return t.state == TouchState.unknown.value or (
        t.state == TouchState.claimed.value and not t.claimed_by and t.attempts > 0)


def _previous_email(conn: Connection, enrollment_id: int, touch_id: int) -> PreviousEmail | None:
    row = conn.execute(
        select(T.c.message_id, T.c.subject, T.c.references)
        # state through an expression: SQLite would otherwise pick the partial
        # (state, lease_until) index and read every sent touch, not this enrollment's few.
        .where(T.c.enrollment_id == enrollment_id, T.c.channel == "email",
               T.c.state.concat("") == TouchState.sent.value, T.c.id != touch_id)
        .order_by(T.c.id.desc()).limit(1)
    ).first()
    return PreviousEmail(row.message_id, row.subject, row.references) if row else None


# DueEnrollment's fields, in its order.
_DUE_COLUMNS = (E.c.id, E.c.lead_id, E.c.sequence, E.c.step_index, E.c.occurrence,
                E.c.touch_number, E.c.next_due_at, E.c.step_name)


def _due(conn: Connection, r: Any) -> DueEnrollment:
    """A due row, with what the planner may ask for read lazily in this transaction."""
    return DueEnrollment(*r, done=partial(replan.done_steps, conn, r[0]),
                         lead=partial(replan.lead_of, conn, r[1]))


def _try_insert(conn: Connection, r: dict[str, Any]) -> int | None:
    """The new touch's id; None if its step already has one (the savepoint is undone)."""
    try:
        with conn.begin_nested():
            return int(conn.execute(insert(T).returning(T.c.id), r).scalar_one())
    except IntegrityError:
        return None


def _plan_columns(d: DueEnrollment, p: TouchPlan) -> dict[str, Any]:
    """The step columns of a touch: as planned now (the sequence may have been edited)."""
    return {
        "step_name": p.step_name,
        "step_index": d.step_index if p.step_index is None else p.step_index,
        "occurrence": d.occurrence if p.occurrence is None else p.occurrence,
        "channel": p.channel, "task_kind": p.task_kind, "mailbox": p.mailbox,
        "message_id": p.message_id,
    }


def _new_touch(d: DueEnrollment, p: TouchPlan) -> dict[str, Any]:
    """The step columns of a new touch (_STEP_COLUMNS); the claim adds the rest."""
    return {
        "enrollment_id": d.id, "lead_id": d.lead_id, "sequence": d.sequence,
        **_plan_columns(d, p), "touch_number": d.touch_number + 1, "planned_at": d.due_at,
    }


def claim_of(r: Any) -> Claim:
    return Claim(
        touch_id=r["id"], fence=r["fence"], enrollment_id=r["enrollment_id"],
        lead_id=r["lead_id"], sequence=r["sequence"], step_index=r["step_index"],
        occurrence=r["occurrence"], touch_number=r["touch_number"], channel=r["channel"],
        mailbox=r["mailbox"], message_id=r["message_id"], attempts=r["attempts"],
        step_name=r["step_name"],
        planned_at=r["planned_at"], deferrals=r["deferrals"],
    )
