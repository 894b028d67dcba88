"""In-memory fakes for fast tests: a frozen clock, a recording SMTP sender, a Sent folder.

They satisfy the Protocols in engine/services/ports.py, so services run unchanged on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

from engine.errors import SendError


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
