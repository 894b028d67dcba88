"""Due enrollments the claim does not simply turn into a touch: the sequence was edited under
them (moved to another step, or finished) or their on_finish target is not loaded (held).

Runs inside the claim transaction (store/queue.py); the planner (services/send_due.py) has
decided, this only records it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from engine.domain.lead import LeadRecord
from engine.domain.states import EnrollmentState
from engine.domain.touch import Defer, DueEnrollment, NoStep, TouchPlan
from engine.store import events
from engine.store.leads import LIVE, lead_record
from engine.store.tables import Enrollment, Lead, Touch
from engine.store.transitions import enroll_follow_on

E, T, L = Enrollment.__table__, Touch.__table__, Lead.__table__


def done_steps(conn: Connection, enrollment_id: int) -> list[tuple[str, int]]:
    """The (step name, occurrence) of every touch the enrollment had, oldest first."""
    return [(r.step_name, r.occurrence) for r in conn.execute(
        select(T.c.step_name, T.c.occurrence).where(T.c.enrollment_id == enrollment_id)
        .order_by(T.c.id))]


def lead_of(conn: Connection, lead_id: int) -> LeadRecord:
    return lead_record(conn.execute(select(L).where(L.c.id == lead_id)).one())


def moved(d: DueEnrollment, p: TouchPlan) -> bool:
    """Does the claimed step differ from what the enrollment row says (an edit, or no name)?"""
    index = d.step_index if p.step_index is None else p.step_index
    occurrence = d.occurrence if p.occurrence is None else p.occurrence
    return (p.step_name, index, occurrence) != (d.step_name, d.step_index, d.occurrence)


def follow(conn: Connection, d: DueEnrollment, p: TouchPlan, now: datetime) -> None:
    """Point the enrollment at the step claimed for it, so its outcome advances it."""
    index = d.step_index if p.step_index is None else p.step_index
    occurrence = d.occurrence if p.occurrence is None else p.occurrence
    conn.execute(update(E).where(E.c.id == d.id).values(
        step_name=p.step_name, step_index=index, occurrence=occurrence, updated_at=now))
    if d.step_name and d.step_name != p.step_name:
        events.log(conn, "enrollment_moved", now, d.lead_id, d.id, sequence=d.sequence,
                   from_step=d.step_name, to_step=p.step_name,
                   reason="the sequence was edited")


def settle(conn: Connection, d: DueEnrollment, outcome: NoStep | Defer | None,
           now: datetime) -> None:
    """No touch for this due enrollment: finish it (and follow on), or hold it until later."""
    if isinstance(outcome, Defer):
        conn.execute(update(E).where(E.c.id == d.id, E.c.state.in_(LIVE)).values(
            next_due_at=outcome.until, updated_at=now))
        return
    outcome = outcome or NoStep("the sequence has no step left for it")
    done = conn.execute(update(E).where(E.c.id == d.id, E.c.state.in_(LIVE)).values(
        state=EnrollmentState.finished.value, next_due_at=None, updated_at=now)).rowcount
    if not done:
        return
    events.log(conn, "enrollment_finished", now, d.lead_id, d.id, reason=outcome.reason)
    if outcome.follow_on is not None:
        enroll_follow_on(conn, d.lead_id, outcome.follow_on.sequence, outcome.follow_on.next,
                         now, d.sequence)

