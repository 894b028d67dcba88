"""Read-only queries for the operator: status, leads, a lead's timeline, tasks, in-doubt touches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from engine.domain.lead import LeadRecord
from engine.domain.states import RETRYABLE_STOPS, EnrollmentState, TouchState
from engine.store.db import Database
from engine.store.events import TimelineItem, timeline
from engine.store.leads import LIVE, lead_record, suppression_in
from engine.store.queue import ACTIVE, CLAIMED
from engine.store.tables import Enrollment, Lead, Suppression, Touch

T, E, L, S = Touch.__table__, Enrollment.__table__, Lead.__table__, Suppression.__table__


@dataclass
class Status:
    due_now: int = 0
    oldest_due_at: datetime | None = None
    next_due_at: datetime | None = None
    waiting_retry: int = 0
    retry_error: str = ""  # why the touch waiting to retry that was tried last is waiting
    enrollments: dict[str, int] = field(default_factory=dict)
    touches: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0

    @property
    def in_doubt(self) -> int:
        return self.touches.get(TouchState.unknown.value, 0)


@dataclass(frozen=True)
class TouchRow:
    id: int
    email: str
    sequence: str
    step: str
    channel: str
    state: str
    mailbox: str
    message_id: str
    subject: str
    body_text: str
    attempts: int
    planned_at: datetime
    claimed_at: datetime | None
    sent_at: datetime | None
    error: str
    task_kind: str


@dataclass
class LeadReport:
    lead: LeadRecord
    enrollments: list[dict[str, Any]]
    touches: list[TouchRow]
    timeline: list[TimelineItem]
    suppressed: str | None


class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def status(self, now: datetime) -> Status:
        st = Status()
        with self.db.read() as conn:
            due = conn.execute(select(func.count(), func.min(E.c.next_due_at)).where(
                E.c.state == ACTIVE, E.c.next_due_at <= now)).one()
            st.due_now, st.oldest_due_at = due[0], due[1]
            st.next_due_at = conn.execute(select(func.min(E.c.next_due_at)).where(
                E.c.state == ACTIVE, E.c.next_due_at > now)).scalar()
            waiting = (T.c.state == CLAIMED, T.c.retry_at.isnot(None))
            st.waiting_retry = conn.execute(select(func.count()).where(*waiting)).scalar() or 0
            if st.waiting_retry:
                st.retry_error = conn.execute(select(T.c.error).where(*waiting, T.c.error != "")
                                              .order_by(T.c.claimed_at.desc()).limit(1)
                                              ).scalar() or ""
            st.enrollments = dict(conn.execute(
                select(E.c.state, func.count()).group_by(E.c.state)).all())
            st.touches = dict(conn.execute(
                select(T.c.state, func.count()).group_by(T.c.state)).all())
            st.suppressed = conn.execute(select(func.count()).select_from(S)).scalar() or 0
        return st

    def live_by_sequence(self) -> dict[str, int]:
        """Enrollments still to be worked (active or paused), counted per sequence."""
        with self.db.read() as conn:
            return dict(conn.execute(
                select(E.c.sequence, func.count()).where(E.c.state.in_(LIVE))
                .group_by(E.c.sequence)).all())

    def enrollments(self, limit: int = 50, sequence: str | None = None,
                    state: str | None = None) -> list[dict[str, Any]]:
        q = (select(L.c.email, L.c.first_name, L.c.last_name, L.c.company, L.c.stage,
                    E.c.id, E.c.sequence, E.c.state, E.c.stop_reason, E.c.step_index,
                    E.c.touch_number, E.c.next_due_at, E.c.last_touch_at)
             .join(L, L.c.id == E.c.lead_id).order_by(E.c.id.desc()).limit(limit))
        if sequence:
            q = q.where(E.c.sequence == sequence)
        if state:
            q = q.where(E.c.state == state)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def lead(self, email: str) -> LeadReport | None:
        with self.db.read() as conn:
            row = conn.execute(select(L).where(L.c.email == email.strip().lower())).first()
            if row is None:
                return None
            lead = lead_record(row)
            enrollments = [dict(r._mapping) for r in conn.execute(
                select(E).where(E.c.lead_id == lead.id).order_by(E.c.id))]
            touches = self._touches(conn, T.c.lead_id == lead.id)
            events = timeline(conn, lead.id)
            suppressed = suppression_in(conn, lead.email)
        return LeadReport(lead, enrollments, touches, events, suppressed)

    def open_tasks(self) -> list[TouchRow]:
        with self.db.read() as conn:
            return self._touches(conn, T.c.state == TouchState.open.value)

    def in_doubt(self) -> list[TouchRow]:
        with self.db.read() as conn:
            return self._touches(conn, T.c.state == TouchState.unknown.value)

    def failed(self) -> list[TouchRow]:
        """Failed touches that stopped their enrollment and can be retried (needs attention)."""
        stopped = select(E.c.id).where(E.c.state == EnrollmentState.stopped.value,
                                       E.c.stop_reason.in_(RETRYABLE_STOPS))
        with self.db.read() as conn:
            return self._touches(conn, T.c.state == TouchState.failed.value,
                                 T.c.enrollment_id.in_(stopped))

    def touches(self, *where: Any) -> list[TouchRow]:
        with self.db.read() as conn:
            return self._touches(conn, *where)

    @staticmethod
    def _touches(conn: Any, *where: Any) -> list[TouchRow]:
        q = (select(T.c.id, L.c.email, T.c.sequence, T.c.step_name, T.c.channel, T.c.state,
                    T.c.mailbox, T.c.message_id, T.c.subject, T.c.body_text, T.c.attempts,
                    T.c.planned_at, T.c.claimed_at, T.c.sent_at, T.c.error, T.c.task_kind)
             .join(L, L.c.id == T.c.lead_id).where(*where).order_by(T.c.id))
        return [TouchRow(*r) for r in conn.execute(q)]
