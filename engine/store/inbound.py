"""Inbound mail in the database: watcher cursors, and the one transaction that records a
message and acts on it (match, stop, pause, suppress, hand off).

The service (services/handle_inbound.py) decides; `InboundTx` only reads and writes. On
PostgreSQL the lead's live enrollments are locked first (FOR UPDATE): begin_send locks the
same row before it moves a touch to `sending`, so a stop committed here and a send begun
there are strictly ordered. Claimed touches are taken with SKIP LOCKED so that this
transaction never waits on a touch a sender holds (which would deadlock against the sender
waiting on the enrollment); the sender then finds the enrollment stopped and skips it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from engine.domain.correlation import MatchKey
from engine.domain.lead import LeadRecord
from engine.domain.schedule import assume_utc
from engine.domain.states import EnrollmentState, HandoffState, TouchState
from engine.errors import ConcurrentUpdate, DatabaseError
from engine.store import events
from engine.store.db import Database
from engine.store.leads import LIVE, end_live, lead_record, suppress_in
from engine.store.tables import (
    Enrollment,
    Handoff,
    InboundMessage,
    KeyValue,
    Lead,
    MailboxCursor,
    Touch,
)

E, T, L, IB = Enrollment.__table__, Touch.__table__, Lead.__table__, InboundMessage.__table__
H, KV, MC = Handoff.__table__, KeyValue.__table__, MailboxCursor.__table__
ROUND_ROBIN_KEY = "handoff_round_robin"
SOFT_BOUNCE_PREFIX = "soft_bounces:"
OPEN_HANDOFF = (HandoffState.open.value, HandoffState.claimed.value)
SKIPPABLE = (TouchState.claimed.value, TouchState.open.value)  # not yet with the relay


@contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """Any database failure becomes DatabaseError: the watcher then retries the same message
    later instead of skipping it (a reply must not be lost to a failover or a lock)."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{doing}: the database failed: {getattr(exc, 'orig', None) or exc}"
                            ) from exc


class LiveEnrollment(NamedTuple):
    id: int
    sequence: str
    state: str
    paused_until: datetime | None
    enrolled_at: datetime | None = None


class Matched(NamedTuple):
    lead_id: int
    touch_id: int | None
    by: str
    sequence: str  # the touch's sequence when matched through one, else ""


class Duplicate(NamedTuple):
    """The message was handled before: same UID in the same folder, or same Message-ID."""

    inbound_id: int
    why: str


# --- cursors ---------------------------------------------------------------------------------

class CursorTable:
    """The watcher's CursorStore (engine.mail.imap) over the MailboxCursor table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        with database_errors("reading the mailbox cursor"), self.db.read() as conn:
            row = conn.execute(select(MC.c.uidvalidity, MC.c.last_uid).where(
                MC.c.mailbox == mailbox, MC.c.folder == folder)).first()
        return (int(row[0]), int(row[1])) if row else None

    def save(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        with database_errors("saving the mailbox cursor"):
            self._save(mailbox, folder, uidvalidity, last_uid)

    def _save(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        now = datetime.now(UTC)
        for _ in range(2):  # a second daemon may insert the same row first: then update it
            try:
                with self.db.write() as conn:
                    done = conn.execute(update(MC).where(
                        MC.c.mailbox == mailbox, MC.c.folder == folder,
                    ).values(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)).rowcount
                    if not done:
                        conn.execute(insert(MC).values(
                            mailbox=mailbox, folder=folder, uidvalidity=uidvalidity,
                            last_uid=last_uid, updated_at=now))
                return
            except IntegrityError:
                continue


# --- the inbound transaction -----------------------------------------------------------------

class InboundStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def transaction(self, now: datetime) -> Iterator[InboundTx]:
        """One write transaction: committed when the block ends, rolled back on error.

        A unique violation (another daemon recorded the same message first) becomes
        ConcurrentUpdate and any other database failure (lost connection, lock, failover)
        DatabaseError, so the caller can retry rather than lose the message.
        """
        try:
            with database_errors("recording an inbound message"), self.db.write() as conn:
                tx = InboundTx(conn, self.db.is_postgres, now)
                yield tx
                tx.flush()
        except DatabaseError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ConcurrentUpdate(
                    f"inbound message recorded concurrently: {exc.__cause__.orig}") from exc
            raise

    def oldest_live_enrollment(self) -> datetime | None:
        """When the oldest active or paused enrollment began (where a re-scan starts)."""
        with database_errors("finding the oldest enrollment"), self.db.read() as conn:
            return assume_utc(conn.execute(select(func.min(E.c.enrolled_at))
                                           .where(E.c.state.in_(LIVE))).scalar())


def resume_paused(conn: Connection, sequences: Sequence[str], now: datetime,
                  skip_locked: bool) -> int:
    """Paused enrollments whose pause has ended become active again (run with each claim).

    Their next step keeps its due time, so one that fell due during the pause is due now.
    """
    # A literal state matches the partial index ix_enrollment_paused (sequence, paused_until):
    # only the ended pauses of these sequences are read.
    q = select(E.c.id, E.c.lead_id).where(
        E.c.state == literal_column("'paused'"), E.c.paused_until <= now,
        E.c.sequence.in_(list(sequences)))
    rows = conn.execute(q.with_for_update(skip_locked=True) if skip_locked else q).all()
    if not rows:
        return 0
    conn.execute(update(E).where(E.c.id.in_([r.id for r in rows])).values(
        state=EnrollmentState.active.value, paused_until=None, updated_at=now))
    events.log_many(conn, ({"kind": "enrollment_resumed", "at": now, "lead_id": r.lead_id,
                            "enrollment_id": r.id, "data": {}} for r in rows))
    return len(rows)


def _duplicate(conn: Connection, mailbox: str, folder: str, uidvalidity: int, uid: int,
               message_id: str) -> Duplicate | None:
    found = conn.execute(select(IB.c.id).where(
        IB.c.mailbox == mailbox, IB.c.folder == folder, IB.c.uidvalidity == uidvalidity,
        IB.c.uid == uid)).scalar()
    if found is not None:
        return Duplicate(found, "same UID")
    if message_id:
        found = conn.execute(select(IB.c.id).where(IB.c.message_id == message_id)
                             .order_by(IB.c.id).limit(1)).scalar()
        if found is not None:
            return Duplicate(found, "same Message-ID")
    return None


class InboundTx:
    """Reads and writes inside one inbound transaction (see the module docstring)."""

    def __init__(self, conn: Connection, is_postgres: bool, now: datetime) -> None:
        self.conn, self.is_postgres, self.now = conn, is_postgres, now
        self._events: list[dict[str, Any]] = []  # written in one INSERT at the end

    def flush(self) -> None:
        events.log_many(self.conn, self._events)
        self._events = []

    def duplicate(self, mailbox: str, folder: str, uidvalidity: int, uid: int,
                  message_id: str) -> Duplicate | None:
        return _duplicate(self.conn, mailbox, folder, uidvalidity, uid, message_id)

    # --- matching ----------------------------------------------------------------------------

    def match(self, keys: Sequence[MatchKey]) -> Matched | None:
        """The first key that names a lead, in the given order."""
        for key in keys:
            found = self._by_message_id(key) if key.message_id else self._by_address(key)
            if found is not None:
                return found
        return None

    def _by_message_id(self, key: MatchKey) -> Matched | None:
        # Only a Message-ID we recorded: one that merely looks like ours (another
        # installation's, a restored database's, a forged one) named our enrollment by the
        # number in it, and a stranger's "remove me" stopped and suppressed that lead.
        row = self.conn.execute(select(T.c.id, T.c.lead_id, T.c.sequence).where(
            T.c.message_id == key.message_id).limit(1)).first()
        return Matched(row.lead_id, row.id, key.by, row.sequence) if row is not None else None

    def _by_address(self, key: MatchKey) -> Matched | None:
        lead_id = self.conn.execute(select(L.c.id).where(L.c.email == key.address)).scalar()
        return Matched(lead_id, None, key.by, "") if lead_id is not None else None

    def lead(self, lead_id: int) -> LeadRecord:
        return lead_record(self.conn.execute(select(L).where(L.c.id == lead_id)).one())

    def live_enrollments(self, lead_id: int) -> list[LiveEnrollment]:
        """The lead's active and paused enrollments, newest first, locked until commit."""
        q = (select(E.c.id, E.c.sequence, E.c.state, E.c.paused_until, E.c.enrolled_at)
             .where(E.c.lead_id == lead_id, E.c.state.in_(LIVE))
             .order_by(E.c.enrolled_at.desc(), E.c.id.desc()))
        if self.is_postgres:
            q = q.with_for_update()
        return [LiveEnrollment(r.id, r.sequence, r.state, assume_utc(r.paused_until),
                               assume_utc(r.enrolled_at))
                for r in self.conn.execute(q)]

    # --- recording ---------------------------------------------------------------------------

    def record(self, **values: Any) -> int:
        """Insert the InboundMessage row; values are its columns (received_at: now, unless
        given)."""
        return int(self.conn.execute(insert(IB).returning(IB.c.id).values(
            {"received_at": self.now, **values})).scalar_one())

    def log(self, kind: str, lead_id: int | None, enrollment_id: int | None = None,
            **data: Any) -> None:
        self._events.append({"kind": kind, "at": self.now, "lead_id": lead_id,
                             "enrollment_id": enrollment_id, "data": data})

    # --- acting on enrollments and touches ---------------------------------------------------

    def end(self, enrollment_ids: Sequence[int], state: str, reason: str) -> list[int]:
        """Move live enrollments to `state` (handed_off or stopped); the ids that moved. The
        service logs each with the inbound message that ended it."""
        return end_live(self.conn, enrollment_ids, state, reason, self.now)

    def pause(self, enrollment_id: int, until: datetime) -> None:
        self.conn.execute(update(E).where(E.c.id == enrollment_id, E.c.state.in_(LIVE)).values(
            state=EnrollmentState.paused.value, paused_until=until, updated_at=self.now))

    def skip_claimed(self, lead_id: int, reason: str,
                     enrollment_ids: Sequence[int] | None = None) -> list[int]:
        """Skip the lead's touches that are claimed but not yet sending, and its open tasks
        (a rep must not call a lead who replied); their ids. Only those of `enrollment_ids`
        when given.

        SKIP LOCKED: a touch a sender holds right now is left to it; the sender then waits
        for the enrollment lock we hold, finds the enrollment stopped and skips it itself.
        """
        q = select(T.c.id, T.c.enrollment_id, T.c.step_name).where(
            T.c.lead_id == lead_id, T.c.state.in_(SKIPPABLE))
        if enrollment_ids is not None:
            q = q.where(T.c.enrollment_id.in_(list(enrollment_ids)))
        if self.is_postgres:
            q = q.with_for_update(skip_locked=True)
        rows = self.conn.execute(q).all()
        for r in rows:
            self.conn.execute(update(T).where(T.c.id == r.id).values(
                state=TouchState.skipped.value, error=reason, lease_until=None, retry_at=None,
                raw=b""))
            self.log("touch_skipped", lead_id, r.enrollment_id, touch_id=r.id,
                     step=r.step_name, reason=reason)
        return [r.id for r in rows]

    def sending(self, lead_id: int) -> list[int]:
        """The lead's touches in the SMTP transaction right now (they cannot be called back)."""
        return list(self.conn.execute(select(T.c.id).where(
            T.c.lead_id == lead_id, T.c.state == TouchState.sending.value)).scalars())

    def suppress(self, email: str, reason: str, source: str) -> bool:
        """Suppress an address (and stop its lead's live enrollments); False if it was."""
        self.flush()  # suppress_in logs at once: keep the timeline in order
        return suppress_in(self.conn, email, reason, source, self.now)

    def count_soft_bounce(self, email: str) -> int:
        """Count one more soft bounce for an address; the new total."""
        return self._bump(SOFT_BOUNCE_PREFIX + email.strip().lower())

    def retry_touch(self, touch_id: int, at: datetime, reason: str) -> bool:
        """A sent email that soft-bounced waits to go out again at `at`; False if it is not
        a sent email of a live (active or paused) enrollment.

        The same touch row, so never a second copy of the step: `claimed` with retry_at is
        what the send loop retakes (claim_retries). Its bytes were dropped when it was sent,
        so it is rendered again with the same Message-ID (a new Date); the enrollment has
        moved on already and is not advanced a second time (advance_in's step guard). A
        finished enrollment's touch is not retried: begin_send would skip it.
        """
        row = self.conn.execute(
            select(T.c.lead_id, T.c.enrollment_id, T.c.step_name)
            .join(E, E.c.id == T.c.enrollment_id)
            .where(T.c.id == touch_id, T.c.state == TouchState.sent.value,
                   T.c.channel == "email", E.c.state.in_(LIVE))).first()
        if row is None:
            return False
        self.conn.execute(update(T).where(T.c.id == touch_id).values(
            state=TouchState.claimed.value, retry_at=at, claimed_by="", lease_until=None,
            fence=T.c.fence + 1, error=reason[:500]))
        self.log("touch_retry", row.lead_id, row.enrollment_id, touch_id=touch_id,
                 step=row.step_name, retry_at=at, error=reason[:200], soft_bounce=True)
        return True

    # --- handoffs ----------------------------------------------------------------------------

    def open_handoff(self, lead_id: int) -> int | None:
        """The lead's handoff that is still open or claimed, if any."""
        return self.conn.execute(select(H.c.id).where(
            H.c.lead_id == lead_id, H.c.state.in_(OPEN_HANDOFF)).order_by(H.c.id.desc())
            .limit(1)).scalar()

    def create_handoff(self, lead_id: int, inbound_id: int, sequence: str, rep: str,
                       note: str = "") -> int:
        hid = int(self.conn.execute(insert(H).returning(H.c.id).values(
            lead_id=lead_id, inbound_id=inbound_id, sequence=sequence, rep=rep,
            state=HandoffState.open.value, outcome="", note=note, created_at=self.now,
        )).scalar_one())
        self.log("handoff_created", lead_id, handoff_id=hid, rep=rep, sequence=sequence,
                 inbound_id=inbound_id)
        return hid

    def next_round_robin(self) -> int:
        """The persistent round-robin counter's value before this call (0, 1, 2, ...)."""
        return self._bump(ROUND_ROBIN_KEY) - 1

    def _bump(self, key: str) -> int:
        """Increment a KeyValue counter under a row lock; the new value."""
        q = select(KV.c.value).where(KV.c.key == key)
        current = self.conn.execute(q.with_for_update() if self.is_postgres else q).scalar()
        if current is None:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(insert(KV).values(key=key, value="1"))
                return 1
            except IntegrityError:  # another transaction created it first: lock it now
                current = self.conn.execute(q.with_for_update() if self.is_postgres else q
                                            ).scalar_one()
        value = int(current or 0) + 1
        self.conn.execute(update(KV).where(KV.c.key == key).values(value=str(value)))
        return value
