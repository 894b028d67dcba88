"""What handle_inbound needs from the store and what it reports: the consumer's ports.

store/inbound.py (InboundStore, InboundTx) satisfies these structurally, and engine/testing.py
has the in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.domain.correlation import MatchKey
from engine.domain.lead import LeadRecord

# --- what the service needs ------------------------------------------------------------------

class RawMessage(Protocol):
    """engine.mail.imap.RawInbound, structurally."""

    @property
    def mailbox(self) -> str: ...
    @property
    def folder(self) -> str: ...
    @property
    def uidvalidity(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def raw(self) -> bytes: ...


class LiveEnrollment(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def sequence(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def paused_until(self) -> datetime | None: ...
    @property
    def enrolled_at(self) -> datetime | None: ...


class Matched(Protocol):
    @property
    def lead_id(self) -> int: ...
    @property
    def touch_id(self) -> int | None: ...
    @property
    def by(self) -> str: ...
    @property
    def sequence(self) -> str: ...


class Duplicate(Protocol):
    @property
    def inbound_id(self) -> int: ...
    @property
    def why(self) -> str: ...


class InboundTx(Protocol):
    """One transaction of store.inbound.InboundTx."""

    def duplicate(self, mailbox: str, folder: str, uidvalidity: int, uid: int,
                  message_id: str) -> Duplicate | None: ...
    def match(self, keys: Sequence[MatchKey]) -> Matched | None: ...
    def lead(self, lead_id: int) -> LeadRecord: ...
    def live_enrollments(self, lead_id: int) -> Sequence[LiveEnrollment]: ...
    def record(self, **values: Any) -> int: ...
    def log(self, kind: str, lead_id: int | None, enrollment_id: int | None = None,
            **data: Any) -> None: ...
    def end(self, enrollment_ids: Sequence[int], state: str, reason: str) -> list[int]: ...
    def pause(self, enrollment_id: int, until: datetime) -> None: ...
    def skip_claimed(self, lead_id: int, reason: str,
                     enrollment_ids: Sequence[int] | None = None) -> list[int]: ...
    def sending(self, lead_id: int) -> list[int]: ...
    def suppress(self, email: str, reason: str, source: str) -> bool: ...
    def count_soft_bounce(self, email: str) -> int: ...
    def retry_touch(self, touch_id: int, at: datetime, reason: str) -> bool: ...
    def open_handoff(self, lead_id: int) -> int | None: ...
    def create_handoff(self, lead_id: int, inbound_id: int, sequence: str, rep: str,
                       note: str = "") -> int: ...
    def next_round_robin(self) -> int: ...


class InboundStore(Protocol):
    def transaction(self, now: datetime) -> AbstractContextManager[InboundTx]: ...


# --- what it reports -------------------------------------------------------------------------

@dataclass(frozen=True)
class HandoffEvent:
    """Told after commit: a handoff was opened (new) or its lead wrote again (not new)."""

    handoff_id: int
    inbound_id: int
    new: bool


@dataclass
class Handled:
    """What handling one message did (for logs and tests)."""

    inbound_id: int | None
    kind: str
    reason: str = ""
    lead_id: int | None = None
    matched_by: str = "none"
    duplicate: str = ""  # why it was not handled again, when it was seen before
    ended: list[int] = field(default_factory=list)  # enrollments handed off or stopped
    paused: dict[int, datetime] = field(default_factory=dict)
    skipped_touches: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)  # touches `sending` at the commit
    suppressed: list[str] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)  # soft-bounced touches sent again later
    handoff: HandoffEvent | None = None
