"""Per-mailbox sending state shared by every worker: pauses and the budget limits leave.

Limits are counted from the touch table: emails sent in the window (index on mailbox,
sent_at) plus those claimed or sending right now, which will be sent in it. The count and
the claim it sizes run in one transaction (Budget): serialized per mailbox by an advisory
lock on PostgreSQL and by BEGIN IMMEDIATE on SQLite, so several workers on one database
share one budget. A pause lives in the KeyValue table for the same reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, text

from engine.domain.states import TouchState
from engine.store.db import Database
from engine.store.tables import KeyValue, Touch

T, KV = Touch.__table__, KeyValue.__table__
PAUSE_PREFIX = "mailbox_paused:"
# Two keys, so nurture's locks cannot collide with another application's on the database.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('nurture.mailbox'), hashtext(:m))")
_FLYING = (TouchState.claimed.value, TouchState.sending.value)
_HELD = and_(T.c.state == TouchState.claimed.value, T.c.claimed_by != "",
             T.c.retry_at.is_(None))  # claimed by a live worker, not waiting for a retry


def used(conn: Connection, mailbox: str, now: datetime) -> tuple[int, int]:
    """(last minute, last 24 hours): emails sent in each window plus those in flight."""
    minute = now - timedelta(minutes=1)
    day, last_minute = conn.execute(select(  # index (mailbox, sent_at)
        func.count(), func.coalesce(func.sum(case((T.c.sent_at >= minute, 1), else_=0)), 0),
    ).where(T.c.mailbox == mailbox, T.c.sent_at >= now - timedelta(days=1),
            T.c.state == TouchState.sent.value, T.c.channel == "email")).one()
    flying = conn.execute(select(func.count()).where(  # index (state, ...): few rows
        T.c.state.in_(_FLYING), T.c.mailbox == mailbox, T.c.channel == "email",
        or_(T.c.state == TouchState.sending.value, _HELD))).scalar_one()
    return int(last_minute) + flying, int(day) + flying


class Budget:
    """How many more emails a mailbox may claim now, asked inside the claim's transaction.

    Called by the queue with its connection and the number it wants; answers at most that.
    `held_back` tells the caller that the limit, not the batch size, decided.
    """

    def __init__(self, mailbox: str, per_minute: int, daily: int, now: datetime,
                 postgres: bool) -> None:
        self.mailbox, self.per_minute, self.daily = mailbox, per_minute, daily
        self.now, self.postgres = now, postgres
        self.held_back = False

    def __call__(self, conn: Connection, want: int) -> int:
        if self.postgres:  # held until commit: the next worker counts our claims
            conn.execute(_LOCK, {"m": self.mailbox})
        minute, day = used(conn, self.mailbox, self.now)
        room = max(0, min(self.per_minute - minute, self.daily - day))
        self.held_back = self.held_back or room < want
        return min(want, room)


class MailboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def sent_counts(self, mailbox: str, now: datetime) -> tuple[int, int]:
        """Emails this mailbox sent in the last minute and 24 hours, plus those in flight."""
        with self.db.read() as conn:
            return used(conn, mailbox, now)

    def budget(self, mailbox: str, per_minute: int, daily: int, now: datetime) -> Budget:
        """The limit check a claim runs in its own transaction (see QueueStore.claim_due)."""
        return Budget(mailbox, per_minute, daily, now, self.db.is_postgres)

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
