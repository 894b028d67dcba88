"""Handoffs in the database: the list a rep works from, one handoff with its lead's thread and
timeline, and the guarded moves claim / close / resume (each one transaction).

The service (services/handoff.py) says which moves are allowed; every update here names the
state it expects and, when a rep acts (`by`), that a claimed handoff is claimed by that rep,
in the same UPDATE: two reps acting at once cannot both win, and rep B cannot close or
resume a lead rep A claimed a moment before. The loser gets InvalidTransition saying what
happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, text, update

from engine.domain.lead import LeadRecord
from engine.domain.schedule import assume_utc
from engine.domain.states import HandoffState, TouchState
from engine.domain.touch import NextTouch
from engine.errors import AlreadyEnrolled, InvalidTransition, NotFound, Suppressed
from engine.store import events
from engine.store.db import Database
from engine.store.events import TimelineItem
from engine.store.leads import enroll_one, lead_record, live_in, suppression_in
from engine.store.tables import (
    Enrollment,
    Handoff,
    InboundMessage,
    Lead,
    Touch,
)

H, L, E, T = Handoff.__table__, Lead.__table__, Enrollment.__table__, Touch.__table__
IB = InboundMessage.__table__
SHOWN_TOUCHES = (TouchState.sent.value, TouchState.open.value, TouchState.done.value,
                 TouchState.sending.value, TouchState.unknown.value)


@dataclass(frozen=True)
class HandoffView:
    id: int
    lead_id: int
    email: str
    name: str
    company: str
    sequence: str
    rep: str
    state: str
    outcome: str
    note: str
    inbound_id: int | None
    created_at: datetime
    claimed_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True)
class InboundView:
    id: int
    mailbox: str
    received_at: datetime
    from_addr: str
    subject: str
    kind: str
    reason: str
    new_text: str
    matched_by: str
    message_id: str


@dataclass(frozen=True)
class ThreadItem:
    """One message of the conversation: ours (`out`, a touch) or theirs (`in`)."""

    at: datetime
    direction: str  # out | in
    subject: str
    text: str
    kind: str  # a touch's channel/state, or an inbound message's kind
    ref: int  # touch id or inbound id


@dataclass
class HandoffDetail:
    handoff: HandoffView
    lead: LeadRecord
    reply: InboundView | None
    thread: list[ThreadItem] = field(default_factory=list)
    timeline: list[TimelineItem] = field(default_factory=list)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    suppressed: str | None = None


class HandoffStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reading -------------------------------------------------------------------------------

    def list(self, state: str | None = None, rep: str | None = None,
             limit: int = 200) -> list[HandoffView]:
        q = _select_views().order_by(H.c.id.desc()).limit(limit)
        if state:
            q = q.where(H.c.state == state)
        if rep:
            q = q.where(H.c.rep == rep)
        with self.db.read() as conn:
            return [_view(r) for r in conn.execute(q)]

    def get(self, handoff_id: int) -> HandoffView:
        with self.db.read() as conn:
            return _get(conn, handoff_id)

    def detail(self, handoff_id: int) -> HandoffDetail:
        """The handoff, its lead, the reply that opened it, the thread and the timeline."""
        with self.db.read() as conn:
            h = _get(conn, handoff_id)
            lead = lead_record(conn.execute(select(L).where(L.c.id == h.lead_id)).one())
            reply = None
            if h.inbound_id is not None:
                row = conn.execute(select(IB).where(IB.c.id == h.inbound_id)).first()
                reply = _inbound(row) if row else None
            return HandoffDetail(
                handoff=h, lead=lead, reply=reply, thread=_thread(conn, lead.id),
                timeline=events.timeline(conn, lead.id),
                enrollments=[dict(r._mapping) for r in conn.execute(
                    select(E.c.id, E.c.sequence, E.c.state, E.c.stop_reason, E.c.touch_number,
                           E.c.enrolled_at).where(E.c.lead_id == lead.id).order_by(E.c.id))],
                suppressed=suppression_in(conn, lead.email),
            )

    def raw_messages(self, inbound_ids: Sequence[int]) -> dict[int, bytes]:
        """The stored bytes of inbound messages (the rep page shows a reply in full)."""
        if not inbound_ids:
            return {}
        with self.db.read() as conn:
            return {r.id: bytes(r.raw or b"") for r in conn.execute(
                select(IB.c.id, IB.c.raw).where(IB.c.id.in_(list(inbound_ids))))}

    # --- moves ---------------------------------------------------------------------------------

    def move(self, handoff_id: int, expect: Sequence[str], now: datetime, event: str,
             by: str = "", **values: Any) -> HandoffView:
        """Update a handoff that is in one of the `expect` states (and, when `by` names a rep,
        not claimed by another rep); InvalidTransition if not."""
        with self.db.write() as conn:
            _guarded(conn, handoff_id, expect, values, by)
            h = _get(conn, handoff_id)
            events.log(conn, event, now, h.lead_id, handoff_id=handoff_id, by=by,
                       **{k: v for k, v in values.items() if k in ("rep", "outcome", "note")})
            return h

    def resume(self, handoff_id: int, expect: Sequence[str], sequence: str,
               plan: Callable[[LeadRecord], NextTouch | None], now: datetime,
               by: str = "") -> tuple[HandoffView, int]:
        """Close the handoff as `renurtured` and enroll its lead in `sequence`, atomically."""
        with self.db.write() as conn:
            h = _get(conn, handoff_id)
            lead = lead_record(conn.execute(select(L).where(L.c.id == h.lead_id)).one())
            why = suppression_in(conn, lead.email)
            if why:
                raise Suppressed(lead.email, why)
            if live_in(conn, lead.id, sequence) is not None:
                raise AlreadyEnrolled(f"{lead.email} is already active in '{sequence}'")
            _guarded(conn, handoff_id, expect, {
                "state": HandoffState.closed.value, "outcome": "renurtured", "closed_at": now},
                by)
            eid = enroll_one(conn, lead.id, sequence, plan(lead), now, f"handoff:{handoff_id}")
            events.log(conn, "handoff_closed", now, lead.id, handoff_id=handoff_id, by=by,
                       outcome="renurtured", sequence=sequence, enrollment_id=eid)
            if self.db.is_postgres:
                conn.execute(text("SELECT pg_notify('nurture_due', '')"))  # wake the daemons
            return _get(conn, handoff_id), eid


# --- queries --------------------------------------------------------------------------------------

def _select_views() -> Any:
    return select(H.c.id, H.c.lead_id, L.c.email, L.c.first_name, L.c.last_name, L.c.company,
                  H.c.sequence, H.c.rep, H.c.state, H.c.outcome, H.c.note, H.c.inbound_id,
                  H.c.created_at, H.c.claimed_at, H.c.closed_at).join(L, L.c.id == H.c.lead_id)


def _view(r: Any) -> HandoffView:
    name = " ".join(p for p in (r.first_name, r.last_name) if p)
    return HandoffView(r.id, r.lead_id, r.email, name, r.company, r.sequence, r.rep, r.state,
                       r.outcome, r.note, r.inbound_id, assume_utc(r.created_at),
                       assume_utc(r.claimed_at), assume_utc(r.closed_at))


def _get(conn: Connection, handoff_id: int) -> HandoffView:
    row = conn.execute(_select_views().where(H.c.id == handoff_id)).first()
    if row is None:
        raise NotFound(f"no handoff with id {handoff_id}; `nurture handoffs` lists them")
    return _view(row)


def _guarded(conn: Connection, handoff_id: int, expect: Sequence[str],
             values: dict[str, Any], rep: str = "") -> None:
    """The move, only from an `expect` state and, when `rep` acts, only if no other rep holds
    the claim: one UPDATE, so a claim committed after the caller looked still wins."""
    q = update(H).where(H.c.id == handoff_id, H.c.state.in_(list(expect)))
    if rep:
        q = q.where(or_(H.c.state != HandoffState.claimed.value, H.c.rep == rep))
    if conn.execute(q.values(**values)).rowcount:
        return
    h = _get(conn, handoff_id)
    if rep and h.state == HandoffState.claimed.value and h.rep != rep:
        raise InvalidTransition(f"handoff {handoff_id} was claimed by {h.rep} meanwhile; only "
                                "they can act on it now")
    raise InvalidTransition(f"handoff {handoff_id} is {h.state} now (changed meanwhile); "
                            "look again with `nurture handoff show`")


def _inbound(r: Any) -> InboundView:
    return InboundView(r.id, r.mailbox, assume_utc(r.received_at), r.from_addr,
                       r.subject, r.kind, r.reason, r.new_text, r.matched_by, r.message_id)


def _thread(conn: Connection, lead_id: int) -> list[ThreadItem]:
    """Our touches and their messages, oldest first."""
    items = [
        ThreadItem(assume_utc(r.sent_at or r.claimed_at or r.planned_at),
                   "out", r.subject or r.step_name,
                   r.body_text, f"{r.channel} {r.state}", r.id)
        for r in conn.execute(select(T).where(T.c.lead_id == lead_id,
                                              T.c.state.in_(SHOWN_TOUCHES)))
    ]
    items += [
        ThreadItem(assume_utc(r.received_at), "in", r.subject,
                   r.new_text or _first_lines(r.reason), r.kind, r.id)
        for r in conn.execute(select(IB.c.id, IB.c.received_at, IB.c.subject, IB.c.new_text,
                                     IB.c.kind, IB.c.reason).where(IB.c.lead_id == lead_id))
    ]
    return sorted(items, key=lambda i: (i.at, i.direction == "in", i.ref))


def _first_lines(reason: str) -> str:
    return f"({reason})" if reason else ""
