"""The event log: one row per thing that happens to a lead, written inside the same transaction,
and read back as the lead's timeline."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from engine.domain.schedule import assume_utc
from engine.store.tables import Event

EV = Event.__table__
_INSERT = insert(EV)


@dataclass(frozen=True)
class TimelineItem:
    """One event of a lead's timeline: enrolled, touch_sent, reply_detected, ..."""

    at: datetime
    kind: str
    data: dict[str, Any]


def log(
    conn: Connection, kind: str, at: datetime, lead_id: int | None,
    enrollment_id: int | None = None, **data: Any,
) -> None:
    _write(conn, [{"kind": kind, "at": at, "lead_id": lead_id,
                   "enrollment_id": enrollment_id, "data": _plain(data)}])


def log_many(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Rows of kind, at, lead_id, enrollment_id, data (one INSERT for the lot)."""
    _write(conn, [{"kind": r["kind"], "at": r["at"], "lead_id": r.get("lead_id"),
                   "enrollment_id": r.get("enrollment_id"),
                   "data": _plain(r.get("data") or {})} for r in rows])


def _write(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Now, or at the end of the gathered() block around it: in the order logged either way."""
    pending = conn.info.get(_PENDING)
    if pending is not None:
        pending.extend(rows)
    elif rows:
        conn.execute(_INSERT, rows if len(rows) > 1 else rows[0])


@contextmanager
def gathered(conn: Connection) -> Iterator[None]:
    """Events logged on `conn` inside the block (log, log_many) are written as one INSERT
    when it ends, in the order logged (the send path logs two per touch, and a statement
    costs more than a row). Nothing reads events back inside the block; if it raises, they
    are dropped with its writes."""
    if _PENDING in conn.info:  # already gathered by an outer block
        yield
        return
    pending: list[dict[str, Any]] = []
    conn.info[_PENDING] = pending
    try:
        yield
    finally:
        del conn.info[_PENDING]
    if pending:
        conn.execute(_INSERT, pending)


_PENDING = "nurture.pending_events"


def timeline(conn: Connection, lead_id: int) -> list[TimelineItem]:
    """The lead's events, oldest first."""
    q = (select(EV.c.at, EV.c.kind, EV.c.data).where(EV.c.lead_id == lead_id)
         .order_by(EV.c.at, EV.c.id))
    return [TimelineItem(assume_utc(r.at), r.kind, dict(r.data or {})) for r in conn.execute(q)]


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values: datetimes as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
