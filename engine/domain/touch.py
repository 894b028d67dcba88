"""A touch on its way out: the records the queue hands over and the decisions taken on them.

Pure values shared by services/send_due.py (which decides) and store/queue.py (which
records). The state machine they drive is drawn in docs/send-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Protocol

from engine.domain.lead import LeadRecord

MAX_ATTEMPTS = 8  # transient failures before a touch is given up (about 4 h of backoff)
# Mailbox pauses (quota, relay refusals) are not the message's fault and do not use an
# attempt, but one touch may wait through only so many: about 2 days of hourly quota pauses.
MAX_DEFERRALS = 48
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)


class NextTouch(Protocol):
    """What progress.Next offers: the step an enrollment waits for and when it is due."""

    @property
    def step_index(self) -> int: ...
    @property
    def occurrence(self) -> int: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def step_name(self) -> str: ...


@dataclass(frozen=True)
class DueEnrollment:
    """An active enrollment whose next step has fallen due (being claimed).

    `step_name` is the step it waits for (its identity; `step_index` is where that step stood
    when planned). `done` and `lead` are read only when asked, inside the claim transaction:
    `done` when the sequence was edited, `lead` when on_finish enrolls it elsewhere.
    """

    id: int
    lead_id: int
    sequence: str
    step_index: int
    occurrence: int
    touch_number: int
    due_at: datetime
    step_name: str = ""
    done: Callable[[], list[tuple[str, int]]] = field(
        default=lambda: [], repr=False, compare=False)
    lead: Callable[[], LeadRecord] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TouchPlan:
    """What a claim records for a due step before anything is sent."""

    step_name: str
    channel: str  # email | task
    task_kind: str
    mailbox: str
    message_id: str  # minted now, so it is known before the SMTP transaction
    step_index: int | None = None  # where the step stands now; None: as the enrollment says
    occurrence: int | None = None


@dataclass(frozen=True)
class NoStep:
    """A due enrollment has no step left (the sequence was edited, or it waited for its
    on_finish target): it is finished, then enrolled in `follow_on` if there is one."""

    reason: str
    follow_on: FollowOn | None = None


@dataclass(frozen=True)
class Claim:
    """A touch this worker holds (state claimed, fence = its claim number)."""

    touch_id: int
    fence: int
    enrollment_id: int
    lead_id: int
    sequence: str
    step_index: int
    occurrence: int
    touch_number: int
    channel: str
    mailbox: str
    message_id: str
    attempts: int
    planned_at: datetime
    deferrals: int = 0  # mailbox pauses it waited through so far
    step_name: str = ""  # the step's identity; step_index is where it stood when claimed


@dataclass(frozen=True)
class PreviousEmail:
    """The enrollment's last email touch, for `thread: previous`."""

    message_id: str
    subject: str
    references: str


@dataclass(frozen=True)
class SendContext:
    """Everything known about a claimed touch once its enrollment is locked and re-checked.

    `raw` is set when an earlier attempt already made the message: a retry sends those exact
    bytes again (same Message-ID, same Date), with the subject and text recorded then.
    """

    claim: Claim
    lead: LeadRecord
    enrolled_at: datetime
    # Read only when a step threads (`thread: previous`), inside the same transaction.
    load_previous: Callable[[], PreviousEmail | None] | None = field(
        default=None, repr=False, compare=False)
    raw: bytes = b""
    subject: str = ""
    text: str = ""
    in_reply_to: str = ""
    references: str = ""

    @cached_property
    def previous(self) -> PreviousEmail | None:
        """The enrollment's last email touch, for `thread: previous`."""
        return self.load_previous() if self.load_previous is not None else None


@dataclass(frozen=True)
class FollowOn:
    """`on_finish: {enroll: X}`: the enrollment to open when this one finishes."""

    sequence: str
    next: NextTouch | None


@dataclass(frozen=True)
class Advance:
    """Where an enrollment goes after a touch is done: its next step, or finished (None)."""

    next: NextTouch | None
    follow_on: FollowOn | None = None
    # on_finish names a sequence that is not loaded now: the enrollment waits (next is
    # progress.FIND_NEXT) and an `on_finish_unavailable` event names it.
    on_finish_unavailable: str = ""


# --- what to do with a claimed touch (decided inside the begin-send transaction) --------

@dataclass(frozen=True)
class SendEmail:
    """Move the touch to `sending` with these exact bytes, then run the SMTP transaction."""

    raw: bytes
    sender: str  # envelope MAIL FROM: the mailbox address
    recipient: str
    subject: str
    text: str
    in_reply_to: str = ""
    references: str = ""


@dataclass(frozen=True)
class Skip:
    """The step does not apply (`when:` false): record it skipped and move on."""

    reason: str
    advance: Advance


@dataclass(frozen=True)
class OpenTask:
    """A manual step: the touch waits as an open task until a rep marks it done."""

    note: str


@dataclass(frozen=True)
class Fail:
    """The touch cannot be made (e.g. the template fails for this lead): stop here."""

    reason: str


@dataclass(frozen=True)
class Defer:
    """Not now (mailbox paused or over its limit): keep the claim, try again at `until`."""

    until: datetime
    reason: str


Decision = SendEmail | Skip | OpenTask | Fail | Defer


# --- what came of the SMTP transaction ---------------------------------------------------

@dataclass(frozen=True)
class Delivered:
    code: int
    response: str
    at: datetime


@dataclass(frozen=True)
class Retry:
    at: datetime
    code: int | None
    error: str
    counts: bool = True  # False when the mailbox, not the message, was refused (a pause)


@dataclass(frozen=True)
class Failed:
    code: int | None
    error: str
    bounce: bool  # the address is bad: suppress it and stop every enrollment of the lead


Outcome = Delivered | Retry | Failed


@dataclass(frozen=True)
class Finished:
    """A touch's SMTP outcome to record, with the enrollment's advance (None: none computed)
    and `halt`: why the enrollment cannot go on though the touch left ('' if it can)."""

    claim: Claim
    outcome: Outcome
    advance: Advance | None
    halt: str = ""


@dataclass(frozen=True)
class Begun:
    """What the begin-send transaction did: a decision taken, or why nothing happens."""

    context: SendContext | None
    decision: Decision | None
    blocked: str = ""  # e.g. "claim lost", "enrollment stopped", "suppressed (hard_bounce)"


@dataclass(frozen=True)
class TouchRecord:
    """A touch with its lead, read outside a claim: an in-doubt send, an open task."""

    claim: Claim
    lead: LeadRecord


@dataclass(frozen=True)
class Outbound:
    """Everything that goes into one message."""

    from_addr: str
    to_addr: str
    subject: str
    text: str
    message_id: str
    date: datetime
    html: str = ""
    from_name: str = ""
    to_name: str = ""
    reply_to: str = ""
    in_reply_to: str = ""
    references: str = ""
    unsubscribe_url: str = ""
    unsubscribe_mailto: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. X-Nurture-Touch


def backoff(attempts: int) -> timedelta:
    """Delay before attempt `attempts + 1`: 1, 2, 4 ... minutes, capped at an hour."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)
