"""The event log: one row per thing that happens to a lead, written inside the same transaction,
and read back as the lead's timeline."""

from __future__ import annotations

from collections.abc import Iterable
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
    conn.execute(_INSERT, {"kind": kind, "at": at, "lead_id": lead_id,
                           "enrollment_id": enrollment_id, "data": _plain(data)})


def log_many(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Rows of kind, at, lead_id, enrollment_id, data (one INSERT for the lot)."""
    batch = [{**r, "data": _plain(r.get("data") or {})} for r in rows]
    if batch:
        conn.execute(_INSERT, batch)


def timeline(conn: Connection, lead_id: int) -> list[TimelineItem]:
    """The lead's events, oldest first."""
    q = (select(EV.c.at, EV.c.kind, EV.c.data).where(EV.c.lead_id == lead_id)
         .order_by(EV.c.at, EV.c.id))
    return [TimelineItem(assume_utc(r.at), r.kind, dict(r.data or {})) for r in conn.execute(q)]


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values: datetimes as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
