"""Per-mailbox sending state shared by every worker: pauses and the sent counts limits read.

Limits are counted from the touch table (index on mailbox, sent_at), so several workers on
one database share one budget; a pause lives in the KeyValue table for the same reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, insert, select

from engine.domain.states import TouchState
from engine.store.db import Database
from engine.store.tables import KeyValue, Touch

T, KV = Touch.__table__, KeyValue.__table__
PAUSE_PREFIX = "mailbox_paused:"


class MailboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def sent_counts(self, mailbox: str, now: datetime) -> tuple[int, int]:
        """Messages this mailbox sent in the last minute and in the last 24 hours."""
        minute = now - timedelta(minutes=1)
        with self.db.read() as conn:
            row = conn.execute(select(
                func.count(),
                func.coalesce(func.sum(case((T.c.sent_at >= minute, 1), else_=0)), 0),
            ).where(T.c.mailbox == mailbox, T.c.sent_at >= now - timedelta(days=1),
                    T.c.state == TouchState.sent.value, T.c.channel == "email")).one()
        return int(row[1]), int(row[0])

    def pause(self, mailbox: str, until: datetime, reason: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(KV).where(KV.c.key == PAUSE_PREFIX + mailbox))
            conn.execute(insert(KV).values(key=PAUSE_PREFIX + mailbox,
                                           value=f"{until.isoformat()} {reason}"))

    def paused(self, now: datetime) -> dict[str, tuple[datetime, str]]:
        """Mailboxes paused now: name -> (until, reason)."""
        with self.db.read() as conn:
            rows = conn.execute(select(KV.c.key, KV.c.value)
                                .where(KV.c.key.startswith(PAUSE_PREFIX))).all()
        out = {}
        for key, value in rows:
            stamp, _, reason = value.partition(" ")
            until = datetime.fromisoformat(stamp)
            if until > now:
                out[key.removeprefix(PAUSE_PREFIX)] = (until, reason)
        return out
