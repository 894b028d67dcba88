"""The SQLModel tables: leads, enrollments, touches, suppressions, inbound mail, handoffs.

Times are aware UTC datetimes. sqlmodel (0.0.45 on) gives every `datetime` field its
UTCDateTime type: it refuses a naive datetime, writes UTC (a `timestamptz` column on
PostgreSQL, as the migrations create it; `YYYY-MM-DD HH:MM:SS.ffffff` text without an offset
on SQLite, which has no time zones) and reads back aware UTC on both. State names are the
strings of the enums in engine.domain.states.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class Lead(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True, unique=True)  # lower-cased
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    stage: str = ""
    timezone: str = ""  # IANA; empty -> the configured default
    owner: str = ""  # a rep's name, or empty
    source: str = ""  # how the lead came in (web-form, csv:file.csv, api, cli)
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    updated_at: datetime


class Enrollment(SQLModel, table=True):
    """A lead's passage through one sequence. The scheduler's queue is this table."""

    __table_args__ = (
        # At most one live enrollment of a lead in a sequence (live = active or paused).
        Index(
            "uq_enrollment_live", "lead_id", "sequence",
            unique=True,
            sqlite_where=text("state IN ('active','paused')"),
            postgresql_where=text("state IN ('active','paused')"),
        ),
        # The due queue: only active rows with a due time are ever scanned.
        Index(
            "ix_enrollment_due", "next_due_at",
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        # Pauses that end (checked with every claim, for the claimed sequences): only
        # paused rows are indexed.
        Index(
            "ix_enrollment_paused", "sequence", "paused_until",
            sqlite_where=text("state = 'paused'"),
            postgresql_where=text("state = 'paused'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    sequence: str = Field(index=True)
    state: str = "active"  # EnrollmentState
    stop_reason: str = ""
    step_index: int = 0  # where the next step stood when planned (a hint; the name decides)
    # The next step's name: its identity, so an edit of the sequence (steps inserted,
    # removed, reordered) never re-sends or skips one; '' for rows planned before 0004.
    step_name: str = ""
    occurrence: int = 0  # for `cron` + `repeat` steps: which repetition is next
    touch_number: int = 0  # touches done so far in this enrollment
    next_due_at: datetime | None = None  # UTC; None while a touch is in flight or when done
    paused_until: datetime | None = None
    enrolled_at: datetime
    last_touch_at: datetime | None = None
    updated_at: datetime
    source: str = ""


class Touch(SQLModel, table=True):
    """Every outbound message or manual task, from claim to outcome."""

    __table_args__ = (
        # Never a second copy of the same step: one row per (enrollment, step, repetition),
        # the step by name (its position changes when the sequence is edited).
        # It also serves every lookup by enrollment (its first column): no index of its own.
        UniqueConstraint("enrollment_id", "step_name", "occurrence", name="uq_touch_step"),
        # The budget counts sent emails only: a claim's new touch (not sent) stays out of it.
        Index("ix_touch_mailbox_sent", "mailbox", "sent_at",
              sqlite_where=text("sent_at IS NOT NULL"),
              postgresql_where=text("sent_at IS NOT NULL")),
        Index("ix_touch_state_lease", "state", "lease_until"),
        # Retries and reclaimed touches wait as `claimed` with a retry time; a new claim has
        # none and stays out of it.
        Index("ix_touch_state_retry", "state", "retry_at",
              sqlite_where=text("retry_at IS NOT NULL"),
              postgresql_where=text("retry_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id")  # indexed by uq_touch_step
    # Its enrollment's lead_id, copied for lookups by lead; no foreign key of its own (the
    # enrollment's ties it to the lead, and a claim of 500 touches would check it 500 times).
    lead_id: int = Field(index=True)
    sequence: str
    step_name: str
    step_index: int
    occurrence: int = 0
    touch_number: int = 1
    channel: str = "email"  # email | task
    task_kind: str = ""
    state: str = "claimed"  # TouchState
    mailbox: str = ""
    message_id: str = Field(default="", index=True)  # ours, recorded before SMTP
    in_reply_to: str = ""
    references: str = ""
    subject: str = ""
    body_text: str = ""  # text part (or task note), for the lead's thread and the rep
    planned_at: datetime
    claimed_at: datetime | None = None
    claimed_by: str = ""  # worker name
    lease_until: datetime | None = None
    fence: int = 0  # bumped on every (re)claim: a zombie's late result cannot win
    attempts: int = 0
    deferrals: int = 0  # mailbox pauses this touch waited through (not attempts; capped)
    retry_at: datetime | None = None
    sent_at: datetime | None = None
    smtp_code: int | None = None
    smtp_response: str = ""
    error: str = ""
    completed_by: str = ""  # for tasks: who did it
    # The exact bytes handed to SMTP, kept while the touch is in flight so a retry or an
    # in-doubt resend is byte-identical (same Message-ID and Date); cleared once it settles.
    raw: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))


class Suppression(SQLModel, table=True):
    email: str = Field(primary_key=True)  # lower-cased
    reason: str  # hard_bounce | soft_bounce_repeat | unsubscribe | complaint | manual
    source: str = ""
    created_at: datetime


class Event(SQLModel, table=True):
    """The log of everything that happens to a lead (its timeline)."""

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    enrollment_id: int | None = Field(default=None, index=True)
    kind: str = Field(index=True)  # snake_case event name, e.g. touch_sent, reply_detected
    at: datetime = Field(index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class InboundMessage(SQLModel, table=True):
    """Every message the watchers saw, with its classification and the lead it matched."""

    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_inbound_uid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str = Field(default="", index=True)
    from_addr: str = ""
    subject: str = ""
    received_at: datetime
    kind: str = ""  # InboundKind
    reason: str = ""  # why it was classified so
    failed_recipients: str = ""  # bounces: ';'-separated
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    touch_id: int | None = None
    matched_by: str = ""  # in-reply-to | references | returned-message | sender | none
    new_text: str = ""  # the reply without quote and signature
    raw: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))


class MailboxCursor(SQLModel, table=True):
    """Where a watcher resumes: the last UID seen in a folder, for its UIDVALIDITY."""

    mailbox: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    uidvalidity: int = 0
    last_uid: int = 0
    updated_at: datetime


class Handoff(SQLModel, table=True):
    """A replied lead handed to a rep."""

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    inbound_id: int | None = Field(default=None, foreign_key="inboundmessage.id")
    sequence: str = ""
    rep: str = ""
    state: str = "open"  # open | claimed | closed
    outcome: str = ""  # won | lost | not_now | renurtured
    note: str = ""
    created_at: datetime
    claimed_at: datetime | None = None
    closed_at: datetime | None = None


class Worker(SQLModel, table=True):
    """A running daemon: its heartbeat lets the reaper retake a dead worker's claims."""

    name: str = Field(primary_key=True)
    host: str = ""
    pid: int = 0
    # The pid namespace (kernel boot id + namespace inode): a pid means something only to a
    # worker with the same host and boot_id. Containers sharing a hostname differ here.
    boot_id: str = ""
    started_at: datetime
    heartbeat_at: datetime


class KeyValue(SQLModel, table=True):
    """Small named counters and settings that must survive restarts (e.g. round-robin)."""

    key: str = Field(primary_key=True)
    value: str = ""
