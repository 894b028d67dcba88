"""Leads, enrollments and suppressions: enrolling (one or 100k at a time), merging, suppressing.

Enrolling is idempotent on (email, sequence): the partial unique index uq_enrollment_live
holds at most one live enrollment, and a batch that loses a race with another process (a
unique violation on PostgreSQL) is simply run again and then finds the winner's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from engine.domain.lead import EnrollOutcome, LeadInput, LeadRecord
from engine.domain.states import EnrollmentState, HandoffState
from engine.domain.touch import NextTouch
from engine.store import events
from engine.store.db import Database
from engine.store.tables import Enrollment, Handoff, Lead, Suppression

L, E, S, H = Lead.__table__, Enrollment.__table__, Suppression.__table__, Handoff.__table__
LIVE = (EnrollmentState.active.value, EnrollmentState.paused.value)
WITH_REP = (HandoffState.open.value, HandoffState.claimed.value)
CHUNK = 1000  # rows per transaction on import: big enough to be fast, small enough to retry
_RETRIES = 3

Planner = Callable[[LeadRecord], NextTouch | None]


def lead_record(row: Any, prefix: str = "") -> LeadRecord:
    """The LeadRecord of a row holding the lead's columns, named `prefix` + column (a join
    labels them, e.g. `l_email`)."""
    m, p = row._mapping, prefix
    return LeadRecord(
        id=m[p + "id"], email=m[p + "email"], first_name=m[p + "first_name"],
        last_name=m[p + "last_name"], company=m[p + "company"], stage=m[p + "stage"],
        timezone=m[p + "timezone"], owner=m[p + "owner"], source=m[p + "source"],
        fields=dict(m[p + "fields"] or {}),
    )


class LeadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- enrolling -------------------------------------------------------------------

    def enroll(
        self, inputs: Sequence[LeadInput], sequence: str, plan: Planner, now: datetime,
        source: str,
    ) -> list[EnrollOutcome]:
        """Upsert the leads and enroll them; one outcome per input, in order."""
        out: list[EnrollOutcome] = []
        for start in range(0, len(inputs), CHUNK):
            out.extend(self._enroll_chunk(inputs[start:start + CHUNK], sequence, plan, now, source))
        return out

    def _enroll_chunk(
        self, chunk: Sequence[LeadInput], sequence: str, plan: Planner, now: datetime, source: str
    ) -> list[EnrollOutcome]:
        for attempt in range(_RETRIES):
            try:
                with self.db.write() as conn:
                    return _enroll_in(conn, chunk, sequence, plan, now, source,
                                      notify=self.db.is_postgres)
            except IntegrityError:
                # Another process enrolled one of these leads at the same moment; the retry
                # sees its committed rows and merges into them.
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # --- reading and suppressing -------------------------------------------------------

    def get(self, email: str) -> LeadRecord | None:
        with self.db.read() as conn:
            row = conn.execute(select(L).where(L.c.email == email.strip().lower())).first()
        return lead_record(row) if row else None

    def get_by_id(self, lead_id: int) -> LeadRecord | None:
        with self.db.read() as conn:
            row = conn.execute(select(L).where(L.c.id == lead_id)).first()
        return lead_record(row) if row else None

    def suppression(self, email: str) -> str | None:
        """The reason the address is suppressed, or None."""
        with self.db.read() as conn:
            return suppression_in(conn, email.strip().lower())

    def suppress(self, email: str, reason: str, source: str, now: datetime) -> bool:
        """Suppress an address and stop its lead's live enrollments; False if already so."""
        with self.db.write() as conn:
            return suppress_in(conn, email, reason, source, now)

    # --- changes from outside (services/lead_changes.py) --------------------------------

    def set_stage(self, lead_id: int, stage: str, now: datetime) -> None:
        with self.db.write() as conn:
            old = conn.execute(select(L.c.stage).where(L.c.id == lead_id)).scalar()
            conn.execute(update(L).where(L.c.id == lead_id).values(stage=stage, updated_at=now))
            events.log(conn, "stage_changed", now, lead_id, old=old or "", new=stage)

    def stop(self, lead_id: int, sequence: str | None, reason: str, now: datetime) -> int:
        """Stop the lead's live enrollments (of one sequence, or all); how many."""
        with self.db.write() as conn:
            return len(stop_live(conn, lead_id, reason, now, sequence))


def live_in(conn: Connection, lead_id: int, sequence: str,
            other_than: int | None = None) -> int | None:
    """The lead's live (active or paused) enrollment in this sequence, if any (other than
    enrollment `other_than`)."""
    q = select(E.c.id).where(E.c.lead_id == lead_id, E.c.sequence == sequence,
                             E.c.state.in_(LIVE))
    if other_than is not None:
        q = q.where(E.c.id != other_than)
    return conn.execute(q.limit(1)).scalar()


def suppression_in(conn: Connection, email: str) -> str | None:
    """The reason this (lower-cased) address is suppressed, or None."""
    return conn.execute(select(S.c.reason).where(S.c.email == email)).scalar_one_or_none()


def suppress_in(conn: Connection, email: str, reason: str, source: str, now: datetime,
                stop_reason: str | None = None) -> bool:
    email = email.strip().lower()
    if suppression_in(conn, email) is not None:
        return False
    conn.execute(insert(S).values(email=email, reason=reason, source=source, created_at=now))
    lead_id = conn.execute(select(L.c.id).where(L.c.email == email)).scalar_one_or_none()
    if lead_id is not None:
        events.log(conn, "suppressed", now, lead_id, reason=reason, source=source)
        stop_live(conn, lead_id, stop_reason or reason, now)
    return True


# --- ending enrollments: every stop and every handoff goes through end_live ------------------

def stop_live(conn: Connection, lead_id: int, reason: str, now: datetime,
              sequence: str | None = None) -> list[int]:
    """Stop the lead's live enrollments, of one sequence (the operator's choice) or all (a
    bounce or an unsubscribe ends them all); the ids stopped."""
    q = select(E.c.id).where(E.c.lead_id == lead_id, E.c.state.in_(LIVE))
    if sequence:
        q = q.where(E.c.sequence == sequence)
    return stop(conn, lead_id, list(conn.execute(q).scalars()), reason, now)


def stop(conn: Connection, lead_id: int, enrollment_ids: Sequence[int], reason: str,
         now: datetime, detail: str | None = None) -> list[int]:
    """End those enrollments as `stopped` and log `enrollment_stopped` for each that was still
    live (with `detail` when given: what the sender saw); the ids stopped."""
    ids = end_live(conn, enrollment_ids, EnrollmentState.stopped.value, reason, now)
    data = {"reason": reason} if detail is None else {"reason": reason, "detail": detail}
    events.log_many(conn, (
        {"kind": "enrollment_stopped", "at": now, "lead_id": lead_id, "enrollment_id": i,
         "data": data} for i in ids
    ))
    return ids


def end_live(conn: Connection, enrollment_ids: Sequence[int], state: str, reason: str,
             now: datetime) -> list[int]:
    """Move those enrollments that are still live (active or paused) to `state` (stopped, or
    handed_off: the caller logs why), with nothing due and no pause left; the ids that moved,
    in the order given. The state test is in the UPDATE itself: an end committed by another
    transaction meanwhile (a handoff, a stop) stands and is not counted again."""
    if not enrollment_ids:
        return []
    moved = set(conn.execute(
        update(E).where(E.c.id.in_(list(enrollment_ids)), E.c.state.in_(LIVE))
        .values(state=state, stop_reason=reason, next_due_at=None, paused_until=None,
                updated_at=now)
        .returning(E.c.id)).scalars())
    return [i for i in enrollment_ids if i in moved]


# --- the enroll transaction ---------------------------------------------------------------

def _enroll_in(
    conn: Connection, chunk: Sequence[LeadInput], sequence: str, plan: Planner,
    now: datetime, source: str, notify: bool,
) -> list[EnrollOutcome]:
    merged = _merge_duplicates(chunk)
    emails = list(merged)
    suppressed = dict(conn.execute(
        select(S.c.email, S.c.reason).where(S.c.email.in_(emails))
    ).all())
    with_rep = _with_rep(conn, emails)
    wanted = [e for e in emails if e not in suppressed and e not in with_rep]
    leads = _upsert_leads(conn, [merged[e] for e in wanted], now, source)
    live = set(conn.execute(select(E.c.lead_id).where(
        E.c.sequence == sequence, E.c.state.in_(LIVE),
        E.c.lead_id.in_([lead.id for lead in leads.values()]),
    )).scalars())
    fresh = [leads[e] for e in wanted if leads[e].id not in live]
    enrolled = _insert_enrollments(conn, fresh, sequence, plan, now, source)
    if enrolled and notify:
        conn.execute(text("SELECT pg_notify('nurture_due', '')"))  # delivered on commit
    by_email: dict[str, EnrollOutcome] = {}
    for email in emails:
        if email in suppressed:
            by_email[email] = EnrollOutcome(email, "suppressed", reason=suppressed[email])
        elif email in with_rep:
            by_email[email] = EnrollOutcome(email, "handed_off", reason=with_rep[email])
        elif email in enrolled:
            by_email[email] = enrolled[email]
        else:
            by_email[email] = EnrollOutcome(email, "already", lead_id=leads[email].id)
    return [_with_row(by_email[i.email], i.row) for i in chunk]


def _with_rep(conn: Connection, emails: list[str]) -> dict[str, str]:
    """Leads that replied and are with a rep (an open or claimed handoff): not enrolled
    anywhere until it is closed, so a repeated form post or a CRM sync cannot email them."""
    rows = conn.execute(select(L.c.email, H.c.id, H.c.state, H.c.rep)
                        .join(H, H.c.lead_id == L.c.id)
                        .where(L.c.email.in_(emails), H.c.state.in_(WITH_REP)))
    return {r.email: f"handoff {r.id} {r.state}" + (f" by {r.rep}" if r.rep else "")
            for r in rows}


def merge_lead_in(conn: Connection, item: LeadInput, now: datetime) -> None:
    """Merge `item`'s values into its existing lead, in the caller's transaction."""
    _upsert_leads(conn, [item], now, "")


def _merge_duplicates(chunk: Sequence[LeadInput]) -> dict[str, LeadInput]:
    """One input per address; a later row's values win, custom fields are merged."""
    merged: dict[str, LeadInput] = {}
    for item in chunk:
        prev = merged.get(item.email)
        if prev is not None:
            item = LeadInput(item.email, {**prev.columns, **item.columns},
                             {**prev.custom, **item.custom}, prev.row)
        merged[item.email] = item
    return merged


def _upsert_leads(
    conn: Connection, inputs: list[LeadInput], now: datetime, source: str
) -> dict[str, LeadRecord]:
    if not inputs:
        return {}
    emails = [i.email for i in inputs]
    existing = {r.email: r for r in map(lead_record, conn.execute(
        select(L).where(L.c.email.in_(emails))
    ))}
    new = [i for i in inputs if i.email not in existing]
    if new:
        conn.execute(insert(L), [
            {"email": i.email, "first_name": "", "last_name": "", "company": "", "stage": "",
             "timezone": "", "owner": "", **i.columns, "source": source,
             "fields": dict(i.custom), "created_at": now, "updated_at": now}
            for i in new
        ])
    changed = [_merged_values(existing[i.email], i) for i in inputs if i.email in existing]
    changed = [c for c in changed if c is not None]
    for group in _same_keys(changed):
        # Bound names must differ from column names in an executemany UPDATE.
        stmt = update(L).where(L.c.id == bindparam("_id")).values(
            {k: bindparam(f"v_{k}") for k in group[0] if k != "_id"}
        )
        conn.execute(stmt, [
            {"_id": c["_id"], **{f"v_{k}": v for k, v in c.items() if k != "_id"},
             "v_updated_at": now}
            for c in group
        ])
    return {r.email: r for r in map(lead_record, conn.execute(
        select(L).where(L.c.email.in_(emails))
    ))}


def _merged_values(lead: LeadRecord, item: LeadInput) -> dict[str, Any] | None:
    """The columns to update on an existing lead, or None when nothing changes."""
    values: dict[str, Any] = {
        k: v for k, v in item.columns.items() if v and getattr(lead, k) != v
    }
    fields = {**lead.fields, **item.custom}
    if fields != dict(lead.fields):
        values["fields"] = fields
    if not values:
        return None
    return {"_id": lead.id, **values, "updated_at": None}


def _same_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """executemany needs one set of keys per statement: group rows by their keys."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(sorted(r)), []).append(r)
    return list(groups.values())


def _insert_enrollments(
    conn: Connection, leads: list[LeadRecord], sequence: str, plan: Planner,
    now: datetime, source: str,
) -> dict[str, EnrollOutcome]:
    if not leads:
        return {}
    plans = [plan(lead) for lead in leads]
    rows = [enrollment_row(lead.id, sequence, nxt, now, source)
            for lead, nxt in zip(leads, plans, strict=True)]
    # One multi-row INSERT, matched back by lead (one enrollment each in a batch).
    by_lead = dict(conn.execute(insert(E).returning(E.c.lead_id, E.c.id), rows).all())
    ids = [by_lead[lead.id] for lead in leads]
    events.log_many(conn, (
        {"kind": "enrolled", "at": now, "lead_id": lead.id, "enrollment_id": eid,
         "data": {"sequence": sequence, "source": source,
                  "first_due_at": nxt.due_at if nxt else None}}
        for lead, eid, nxt in zip(leads, ids, plans, strict=True)
    ))
    return {
        lead.email: EnrollOutcome(lead.email, "enrolled", lead.id, eid,
                                  nxt.due_at if nxt else None)
        for lead, eid, nxt in zip(leads, ids, plans, strict=True)
    }


def enroll_one(conn: Connection, lead_id: int, sequence: str, nxt: NextTouch | None,
               now: datetime, source: str) -> int:
    """One new enrollment (the caller has checked suppression and live enrollments), logged
    `enrolled`; its id."""
    eid = int(conn.execute(insert(E).returning(E.c.id).values(
        enrollment_row(lead_id, sequence, nxt, now, source))).scalar_one())
    events.log(conn, "enrolled", now, lead_id, eid, sequence=sequence, source=source,
               first_due_at=nxt.due_at if nxt else None)
    return eid


def enrollment_row(lead_id: int, sequence: str, nxt: NextTouch | None, now: datetime,
                   source: str) -> dict[str, Any]:
    """A new enrollment's columns: at its first step, or finished when it has none."""
    return {
        "lead_id": lead_id, "sequence": sequence,
        "state": EnrollmentState.active.value if nxt else EnrollmentState.finished.value,
        "stop_reason": "", "step_index": nxt.step_index if nxt else 0,
        "step_name": nxt.step_name if nxt else "",
        "occurrence": nxt.occurrence if nxt else 0, "touch_number": 0,
        "next_due_at": nxt.due_at if nxt else None, "paused_until": None,
        "enrolled_at": now, "last_touch_at": None, "updated_at": now, "source": source,
    }


def _with_row(outcome: EnrollOutcome, row: int | None) -> EnrollOutcome:
    if outcome.row == row:
        return outcome
    return EnrollOutcome(outcome.email, outcome.status, outcome.lead_id, outcome.enrollment_id,
                         outcome.due_at, outcome.reason, row)
