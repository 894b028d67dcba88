"""In-memory fakes for fast tests: a frozen clock, a recording SMTP sender, a Sent folder.

They satisfy the Protocols in engine/services/ports.py, so services run unchanged on them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

from engine.domain.correlation import MatchKey
from engine.domain.lead import LeadRecord
from engine.errors import SendError


@dataclass(frozen=True)
class RawMail:
    """A message as a mailbox watcher hands it to HandleInbound (engine.mail.imap.RawInbound,
    with the server's INTERNALDATE optional)."""

    raw: bytes
    uid: int = 1
    mailbox: str = "sales"
    folder: str = "INBOX"
    uidvalidity: int = 1
    internal_date: datetime | None = None


class FrozenClock:
    """Time stands still until a test moves it."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning
        if self.at.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self.at += delta if delta is not None else timedelta(**kwargs)
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at


@dataclass(frozen=True)
class SentMessage:
    mailbox: str
    sender: str
    recipient: str
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass(frozen=True)
class FakeReply:
    code: int
    text: str


@dataclass
class FakeSender:
    """Records every message; `fail` decides, per message, to raise a SendError instead."""

    sent: list[SentMessage] = field(default_factory=list)
    attempts: list[SentMessage] = field(default_factory=list)
    fail: Callable[[SentMessage], SendError | None] | None = None

    async def send(self, mailbox: str, sender: str, recipient: str, raw: bytes) -> FakeReply:
        msg = SentMessage(mailbox, sender, recipient, raw)
        self.attempts.append(msg)
        error = self.fail(msg) if self.fail else None
        if error is not None:
            raise error
        self.sent.append(msg)
        return FakeReply(250, "2.0.0 queued")

    def to(self, address: str) -> list[SentMessage]:
        return [m for m in self.sent if m.recipient == address]


@dataclass
class FakeSentFolder:
    """A Sent folder per mailbox, in memory."""

    folders: dict[str, list[bytes]] = field(default_factory=dict)
    mailboxes: tuple[str, ...] = ()

    def configured(self, mailbox: str) -> bool:
        return not self.mailboxes or mailbox in self.mailboxes

    async def append(self, mailbox: str, raw: bytes) -> None:
        self.folders.setdefault(mailbox, []).append(raw)

    async def contains(self, mailbox: str, message_id: str) -> bool:
        return any(
            str(message_from_bytes(raw, policy=policy.default)["Message-ID"]) == message_id
            for raw in self.folders.get(mailbox, [])
        )


# --- replies and handoffs: an in-memory inbound store (services/handle_inbound.py) ---------

@dataclass
class FakeEnrollment:
    id: int
    lead_id: int
    sequence: str
    state: str = "active"
    paused_until: datetime | None = None
    stop_reason: str = ""
    enrolled_at: datetime | None = None


@dataclass
class FakeTouch:
    id: int
    lead_id: int
    sequence: str
    message_id: str
    state: str = "sent"
    enrollment_id: int = 0
    retry_at: datetime | None = None


@dataclass(frozen=True)
class FakeMatch:
    lead_id: int
    touch_id: int | None
    by: str
    sequence: str


@dataclass(frozen=True)
class FakeDuplicate:
    inbound_id: int
    why: str


@dataclass
class FakeInboundData:
    leads: dict[int, LeadRecord] = field(default_factory=dict)
    enrollments: dict[int, FakeEnrollment] = field(default_factory=dict)
    touches: dict[int, FakeTouch] = field(default_factory=dict)
    inbound: dict[int, dict[str, object]] = field(default_factory=dict)
    events: list[tuple[str, int | None, int | None, dict[str, object]]] = field(
        default_factory=list)
    suppressed: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    handoffs: dict[int, dict[str, object]] = field(default_factory=dict)


class FakeInboundStore:
    """The InboundStore port in memory; a failed transaction leaves no trace (rollback)."""

    def __init__(self) -> None:
        self.data = FakeInboundData()
        self.fail: list[Exception] = []  # raised by the next transactions, one each
        self.commits = 0

    def add_lead(self, email: str, **values: object) -> LeadRecord:
        lead = LeadRecord(id=len(self.data.leads) + 1, email=email, **values)  # type: ignore[arg-type]
        self.data.leads[lead.id] = lead
        return lead

    def enroll(self, lead: LeadRecord, sequence: str, state: str = "active") -> FakeEnrollment:
        e = FakeEnrollment(len(self.data.enrollments) + 1, lead.id, sequence, state)
        self.data.enrollments[e.id] = e
        return e

    def touch(self, e: FakeEnrollment, message_id: str, state: str = "sent") -> FakeTouch:
        t = FakeTouch(len(self.data.touches) + 1, e.lead_id, e.sequence, message_id, state,
                      e.id)
        self.data.touches[t.id] = t
        return t

    def kinds(self) -> list[str]:
        return [e[0] for e in self.data.events]

    @contextmanager
    def transaction(self, now: datetime) -> Iterator[FakeInboundTx]:
        if self.fail:
            raise self.fail.pop(0)
        before = copy.deepcopy(self.data)
        try:
            yield FakeInboundTx(self.data, now)
        except BaseException:
            self.data.__dict__.update(before.__dict__)
            raise
        self.commits += 1


class FakeInboundTx:
    def __init__(self, data: FakeInboundData, now: datetime) -> None:
        self.d, self.now = data, now

    def duplicate(self, mailbox: str, folder: str, uidvalidity: int, uid: int,
                  message_id: str) -> FakeDuplicate | None:
        for i, row in self.d.inbound.items():
            if (row["mailbox"], row["folder"], row["uidvalidity"], row["uid"]) == (
                    mailbox, folder, uidvalidity, uid):
                return FakeDuplicate(i, "same UID")
        for i, row in self.d.inbound.items():
            if message_id and row["message_id"] == message_id:
                return FakeDuplicate(i, "same Message-ID")
        return None

    def match(self, keys: Sequence[MatchKey]) -> FakeMatch | None:
        for k in keys:
            for t in self.d.touches.values():
                if k.message_id and t.message_id == k.message_id:
                    return FakeMatch(t.lead_id, t.id, k.by, t.sequence)
            for lead in self.d.leads.values():
                if k.address and lead.email == k.address:
                    return FakeMatch(lead.id, None, k.by, "")
        return None

    def lead(self, lead_id: int) -> LeadRecord:
        return self.d.leads[lead_id]

    def live_enrollments(self, lead_id: int) -> list[FakeEnrollment]:
        return sorted((e for e in self.d.enrollments.values()
                       if e.lead_id == lead_id and e.state in ("active", "paused")),
                      key=lambda e: -e.id)

    def record(self, **values: object) -> int:
        i = len(self.d.inbound) + 1
        self.d.inbound[i] = {"received_at": self.now, **values}
        return i

    def log(self, kind: str, lead_id: int | None, enrollment_id: int | None = None,
            **data: object) -> None:
        self.d.events.append((kind, lead_id, enrollment_id, data))

    def end(self, enrollment_ids: Sequence[int], state: str, reason: str) -> list[int]:
        moved = []
        for i in enrollment_ids:
            e = self.d.enrollments[i]
            if e.state in ("active", "paused"):
                e.state, e.stop_reason, e.paused_until = state, reason, None
                moved.append(i)
        return moved

    def pause(self, enrollment_id: int, until: datetime) -> None:
        e = self.d.enrollments[enrollment_id]
        e.state, e.paused_until = "paused", until

    def skip_claimed(self, lead_id: int, reason: str,
                     enrollment_ids: Sequence[int] | None = None) -> list[int]:
        ids = [t.id for t in self.d.touches.values()
               if t.lead_id == lead_id and t.state in ("claimed", "open")
               and (enrollment_ids is None or t.enrollment_id in enrollment_ids)]
        for i in ids:
            self.d.touches[i].state = "skipped"
        return ids

    def sending(self, lead_id: int) -> list[int]:
        return [t.id for t in self.d.touches.values()
                if t.lead_id == lead_id and t.state == "sending"]

    def suppress(self, email: str, reason: str, source: str) -> bool:
        if email in self.d.suppressed:
            return False
        self.d.suppressed[email] = reason
        return True

    def count_soft_bounce(self, email: str) -> int:
        return self._bump(f"soft_bounces:{email}")

    def retry_touch(self, touch_id: int, at: datetime, reason: str) -> bool:
        t = self.d.touches.get(touch_id)
        e = self.d.enrollments.get(t.enrollment_id) if t is not None else None
        if t is None or t.state != "sent" or (e is not None and e.state not in (
                "active", "paused")):
            return False
        t.state, t.retry_at = "claimed", at
        self.log("touch_retry", t.lead_id, t.enrollment_id, touch_id=t.id, retry_at=at)
        return True

    def open_handoff(self, lead_id: int) -> int | None:
        live = [i for i, h in self.d.handoffs.items()
                if h["lead_id"] == lead_id and h["state"] in ("open", "claimed")]
        return max(live) if live else None

    def create_handoff(self, lead_id: int, inbound_id: int, sequence: str, rep: str,
                       note: str = "") -> int:
        i = len(self.d.handoffs) + 1
        self.d.handoffs[i] = {"lead_id": lead_id, "inbound_id": inbound_id,
                              "sequence": sequence, "rep": rep, "state": "open",
                              "note": note}
        return i

    def next_round_robin(self) -> int:
        return self._bump("handoff_round_robin") - 1

    def _bump(self, key: str) -> int:
        self.d.counters[key] = self.d.counters.get(key, 0) + 1
        return self.d.counters[key]

