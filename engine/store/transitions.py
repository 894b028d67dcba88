"""Touch and enrollment transitions shared by the queue and the reaper: outcome, advance, stop.

Each function runs inside the caller's transaction; the caller has checked the touch's state
and fence first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, select, update

from engine.domain.states import EnrollmentState, TouchState
from engine.domain.touch import Advance, Delivered, Failed, Outcome, Retry
from engine.store import events, leads
from engine.store.leads import LIVE, live_in, suppress_in, suppression_in
from engine.store.tables import Enrollment, Lead, Touch

T, E, L = Touch.__table__, Enrollment.__table__, Lead.__table__

# The hot path, built once: point the enrollment at its next step (if still at this one:
# the step by name, since an edit of the sequence moves positions).
_ADVANCE = update(E).where(
    E.c.id == bindparam("eid"), E.c.step_name == bindparam("sn"),
    E.c.occurrence == bindparam("oc"),
).values(
    step_index=bindparam("v_si"), step_name=bindparam("v_sn"), occurrence=bindparam("v_oc"),
    updated_at=bindparam("now"),
    next_due_at=case((E.c.state.in_(LIVE), bindparam("v_due", type_=E.c.next_due_at.type)),
                     else_=None),
)
_ADVANCE_COUNTED = _ADVANCE.values(touch_number=E.c.touch_number + 1,
                                   last_touch_at=bindparam("now"))
# The last step's finish, built once too (every touch of a one-step sequence comes here).
_AT_STEP = (E.c.id == bindparam("eid"), E.c.step_name == bindparam("sn"),
            E.c.occurrence == bindparam("oc"))
_KEEP_STATE = update(E).where(*_AT_STEP).values(updated_at=bindparam("now"))
_FINISH = _KEEP_STATE.where(E.c.state.in_(LIVE)).values(
    next_due_at=None, state=EnrollmentState.finished.value)
_COUNTED = {"touch_number": E.c.touch_number + 1, "last_touch_at": bindparam("now")}
_FINISHING = {False: (_FINISH, _KEEP_STATE),
              True: (_FINISH.values(_COUNTED), _KEEP_STATE.values(_COUNTED))}


def record_outcome(
    conn: Connection, t: Any, outcome: Outcome, advance: Advance | None, now: datetime
) -> None:
    """Write what came of a send (also used when an in-doubt touch is settled)."""
    base = {"touch_id": t.id, "step": t.step_name, "message_id": t.message_id}
    if isinstance(outcome, Delivered):
        set_touch(conn, t, state=TouchState.sent.value, sent_at=outcome.at,
                  smtp_code=outcome.code, smtp_response=outcome.response[:500],
                  lease_until=None, raw=b"", error="")
        events.log(conn, "touch_sent", now, t.lead_id, t.enrollment_id, **base,
                   mailbox=t.mailbox, smtp=f"{outcome.code} {outcome.response}"[:200])
        advance_in(conn, t, advance or Advance(None), now, counted=True)
    elif isinstance(outcome, Retry):
        set_touch(conn, t, state=TouchState.claimed.value, retry_at=outcome.at, claimed_by="",
                 smtp_code=outcome.code, error=outcome.error[:500], lease_until=None,
                 attempts=t.attempts if outcome.counts else t.attempts - 1,
                 deferrals=t.deferrals + (0 if outcome.counts else 1))
        events.log(conn, "touch_retry", now, t.lead_id, t.enrollment_id, **base,
                   attempts=t.attempts, retry_at=outcome.at, error=outcome.error[:200])
    else:
        _record_failure(conn, t, outcome, now, base)


def _record_failure(
    conn: Connection, t: Any, outcome: Failed, now: datetime, base: dict[str, Any]
) -> None:
    set_touch(conn, t, state=TouchState.failed.value, smtp_code=outcome.code,
              error=outcome.error[:500], lease_until=None, raw=b"")
    events.log(conn, "touch_failed", now, t.lead_id, t.enrollment_id, **base,
               code=outcome.code, error=outcome.error[:200], bounce=outcome.bounce)
    email = conn.execute(select(L.c.email).where(L.c.id == t.lead_id)).scalar_one()
    if outcome.bounce:
        suppress_in(conn, email, "hard_bounce", f"smtp {outcome.code}", now, "bounced")
    leads.stop(conn, t.lead_id, [t.enrollment_id], "bounced" if outcome.bounce else "send_failed",
               now, outcome.error[:200])


def advance_in(conn: Connection, t: Any, advance: Advance, now: datetime, counted: bool) -> None:
    """Move the enrollment past the touch's step: to its next step, or finished.

    Only if the enrollment still points at that step (a guard against double advances);
    a stopped enrollment keeps its state, a paused one keeps waiting with its due time.
    """
    nxt = advance.next
    if nxt is not None:
        conn.execute(_ADVANCE_COUNTED if counted else _ADVANCE, {
            "eid": t.enrollment_id, "sn": t.step_name, "oc": t.occurrence, "now": now,
            "v_si": nxt.step_index, "v_sn": nxt.step_name, "v_oc": nxt.occurrence,
            "v_due": nxt.due_at})
        if advance.on_finish_unavailable:
            events.log(conn, "on_finish_unavailable", now, t.lead_id, t.enrollment_id,
                       sequence=t.sequence, on_finish=advance.on_finish_unavailable,
                       detail="not loaded now (broken or missing): the lead waits for it")
        return
    finish, keep_state = _FINISHING[counted]
    params = {"eid": t.enrollment_id, "sn": t.step_name, "oc": t.occurrence, "now": now}
    if not conn.execute(finish, params).rowcount:
        # stopped or handed off meanwhile: keep that state, count the touch
        conn.execute(keep_state, params)
        return
    events.log(conn, "enrollment_finished", now, t.lead_id, t.enrollment_id)
    if advance.follow_on is not None:
        enroll_follow_on(conn, t.lead_id, advance.follow_on.sequence, advance.follow_on.next,
                         now, t.sequence)


def enroll_follow_on(conn: Connection, lead_id: int, sequence: str, nxt: Any,
                     now: datetime, after: str) -> None:
    """`on_finish: {enroll: sequence}`: a new enrollment, unless suppressed or live there."""
    email = conn.execute(select(L.c.email).where(L.c.id == lead_id)).scalar_one()
    if suppression_in(conn, email) is not None:
        return
    if live_in(conn, lead_id, sequence) is not None:
        return
    leads.enroll_one(conn, lead_id, sequence, nxt, now, f"on_finish:{after}")


def set_touch(conn: Connection, t: Any, **values: Any) -> None:
    """UPDATE touch SET values WHERE id = t.id (statements cached by the columns they set)."""
    key = tuple(sorted(values))
    stmt = _SET_TOUCH.get(key)
    if stmt is None:
        stmt = _SET_TOUCH[key] = update(T).where(T.c.id == bindparam("_id")).values(
            {k: bindparam(f"v_{k}") for k in key})
    conn.execute(stmt, {"_id": t.id, **{f"v_{k}": v for k, v in values.items()}})


_SET_TOUCH: dict[tuple[str, ...], Any] = {}
