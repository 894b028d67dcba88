"""What the services need from the outside world, declared by them (the consumer owns the
interface). Adapters in store/, mail/ and authoring/ satisfy these structurally; in-memory
fakes live in engine/testing.py.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from engine.domain.lead import EnrollOutcome, LeadInput, LeadRecord
from engine.domain.sequence import Sequence as SequenceModel
from engine.domain.touch import (
    Advance,
    Begun,
    Claim,
    Decision,
    DueEnrollment,
    Finished,
    NextTouch,
    Outcome,
    SendContext,
    TouchPlan,
    TouchRecord,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class Catalog(Protocol):
    """The loaded sequences (authoring.catalog.Catalog, or the daemon's LiveCatalog)."""

    @property
    def sequences(self) -> Mapping[str, SequenceModel]: ...

    def get(self, name: str) -> SequenceModel: ...


class Rendered(Protocol):
    subject: str
    text: str
    html: str


class Renderer(Protocol):
    def render_email(self, name: str, context: Mapping[str, Any]) -> Rendered: ...
    def render_text(self, source: str, context: Mapping[str, Any], name: str = ...) -> str: ...


class Reply(Protocol):
    code: int
    text: str


class Sender(Protocol):
    """One SMTP transaction from a mailbox (mail.smtp.SmtpSender); raises SendError."""

    async def send(self, mailbox: str, sender: str, recipient: str, raw: bytes) -> Reply: ...


class SentCopy(Protocol):
    """The mailbox's Sent folder (over IMAP): keep a copy; tell whether a message is there."""

    def configured(self, mailbox: str) -> bool: ...
    async def append(self, mailbox: str, raw: bytes) -> None: ...
    async def contains(self, mailbox: str, message_id: str) -> bool: ...


class MessageBuilder(Protocol):
    """Bytes of a composed message (mail.compose); raises HeaderInjection."""

    def __call__(self, outbound: Any) -> bytes: ...


class LeadStore(Protocol):
    def enroll(self, inputs: Sequence[LeadInput], sequence: str,
               plan: Callable[[LeadRecord], NextTouch | None], now: datetime,
               source: str) -> list[EnrollOutcome]: ...
    def get(self, email: str) -> LeadRecord | None: ...
    def suppression(self, email: str) -> str | None: ...


class Budget(Protocol):
    """A mailbox's room under its limits, asked by the queue inside a claim transaction."""

    held_back: bool  # the limits, not the batch size, capped a claim

    def __call__(self, conn: Any, want: int) -> int: ...


class QueueStore(Protocol):
    def claim_due(self, worker: str, sequences: Collection[str], now: datetime, limit: int,
                  lease: timedelta, plan: Callable[[DueEnrollment], TouchPlan | None],
                  budget: Budget | None = None) -> list[Claim]: ...
    def claim_retries(self, worker: str, sequences: Collection[str], now: datetime,
                      limit: int, lease: timedelta,
                      budget: Budget | None = None) -> list[Claim]: ...
    def next_wakeup(self, sequences: Collection[str]) -> datetime | None: ...
    def begin_send(self, claim: Claim, worker: str, now: datetime, lease: timedelta,
                   decide: Callable[[SendContext], Decision]) -> Begun: ...
    def finish(self, claim: Claim, outcome: Outcome, advance: Advance | None,
               now: datetime, halt: str = "") -> bool: ...
    def send_writes(
        self, items: Sequence[Claim | Finished], worker: str, now: datetime, lease: timedelta,
        decide: Callable[[SendContext], Decision],
    ) -> list[Begun | bool | Exception]: ...
    def give_back(self, claim: Claim, worker: str, now: datetime, retry_at: datetime | None,
                  reason: str) -> bool: ...
    def hand_back(self, claims: Collection[Claim], worker: str, now: datetime) -> int: ...


class MailboxStore(Protocol):
    def sent_counts(self, mailbox: str, now: datetime) -> tuple[int, int]: ...
    def budget(self, mailbox: str, per_minute: int, daily: int, now: datetime) -> Budget: ...
    def pause(self, mailbox: str, until: datetime, reason: str) -> None: ...
    def paused(self, now: datetime) -> dict[str, tuple[datetime, str]]: ...


class WorkerStore(Protocol):
    def reap(self, now: datetime, alive_since: datetime,
             dead: Collection[str] = ()) -> tuple[int, list[TouchRecord]]: ...
    def load(self, touch_id: int) -> tuple[str, TouchRecord]: ...
    def settle(self, touch_id: int, fence: int, from_states: Collection[str], how: str,
               now: datetime, advance: Advance | None = None, by: str = "") -> None: ...
    def retry(self, touch_id: int, now: datetime, by: str = "",
              lead: LeadInput | None = None) -> None: ...
