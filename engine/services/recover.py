"""After a crash: release a dead worker's claims and settle its in-doubt sends, never by guessing.

A `sending` touch of a dead worker may or may not have left. If its Message-ID is in the
mailbox's Sent folder it did (`sent`); otherwise the sequence's `in_doubt` policy decides:
`hold` marks it `unknown` for the operator (`nurture touches --in-doubt`, then `resend` or
`mark-sent`), `resend` claims it again with the same Message-ID and bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from engine.domain.states import TouchState
from engine.domain.touch import TouchRecord
from engine.errors import InvalidTransition, MailboxError
from engine.services.enroll import parse_lead
from engine.services.planning import Planning, settle_done
from engine.services.ports import Catalog, Clock, SentCopy, WorkerStore

log = structlog.get_logger("nurture.recover")
SENDING = (TouchState.sending.value,)
UNKNOWN = (TouchState.unknown.value,)


@dataclass
class ReapReport:
    released: int = 0
    sent: list[int] = field(default_factory=list)  # found in the Sent folder
    resent: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # Sent folder unreachable: next time


class Recovery:
    def __init__(self, workers: WorkerStore, catalog: Catalog, clock: Clock,
                 default_timezone: str, stale_after: timedelta,
                 sent_copy: SentCopy | None = None) -> None:
        self.workers, self.catalog, self.clock = workers, catalog, clock
        self.stale_after, self.sent_copy = stale_after, sent_copy
        self.plan = Planning(catalog.sequences, default_timezone)

    async def reap(self, dead: Collection[str] = ()) -> ReapReport:
        """One reaper pass: `dead` names workers known dead (their pid is gone)."""
        now = self.clock.now()
        released, doubts = await asyncio.to_thread(
            self.workers.reap, now, now - self.stale_after, dead)
        report = ReapReport(released=released)
        if released:
            log.warning("claims_released", count=released)
        for record in doubts:
            await self._resolve(record, report)
        return report

    async def _resolve(self, record: TouchRecord, report: ReapReport) -> None:
        claim = record.claim
        seq = self.catalog.sequences.get(claim.sequence)
        policy = seq.in_doubt if seq is not None else "hold"
        found = await self._in_sent_folder(claim.mailbox, claim.message_id)
        if found is None and policy == "resend":
            report.waiting.append(claim.touch_id)  # never resend blind: ask the folder again
            return
        how = "sent" if found else ("resend" if policy == "resend" else "hold")
        advance = None
        if how == "sent" and seq is not None:
            advance = self.plan.advance(seq, record.lead, claim.step_index, claim.occurrence,
                                        self.clock.now(), claim.step_name)
        try:
            await asyncio.to_thread(self.workers.settle, claim.touch_id, claim.fence, SENDING,
                                    how, self.clock.now(), advance, "reaper")
        except InvalidTransition:
            # Another worker's reaper settled it between our read and now: its decision
            # stands (the fence and state checks in settle are what make that safe).
            log.info("touch_in_doubt_settled_elsewhere", touch_id=claim.touch_id)
            return
        getattr(report, {"sent": "sent", "resend": "resent", "hold": "held"}[how]).append(
            claim.touch_id)
        log.warning("touch_in_doubt", touch_id=claim.touch_id, message_id=claim.message_id,
                    sequence=claim.sequence, resolution=how)

    async def _in_sent_folder(self, mailbox: str, message_id: str) -> bool | None:
        """True/False when the folder answered; None when it cannot be asked."""
        if self.sent_copy is None or not self.sent_copy.configured(mailbox):
            return False
        try:
            return await self.sent_copy.contains(mailbox, message_id)
        except MailboxError as exc:
            log.warning("sent_folder_unreachable", mailbox=mailbox, error=exc.message)
            return None

    # --- the operator's answers for `unknown` touches -------------------------------------

    def mark_sent(self, touch_id: int, by: str = "operator") -> None:
        """The operator says an in-doubt touch left; the next step counts from now."""
        settle_done(self.workers, self.catalog, self.plan, touch_id, UNKNOWN, "sent",
                    self.clock.now(), by)

    def resend(self, touch_id: int, by: str = "operator") -> None:
        _, record = self.workers.load(touch_id)
        self.workers.settle(touch_id, record.claim.fence, UNKNOWN, "resend",
                            self.clock.now(), None, by)

    def retry(self, touch_id: int, by: str = "operator",
              values: Mapping[str, str] | None = None) -> None:
        """A touch that failed (a template, a lead's missing field, a refused message) made
        again on the next pass, its enrollment going on: the operator fixed the cause, in the
        template or in the lead's data (`values`, merged into the lead as enroll does)."""
        # The lead is read only to name it in `values`; workers.retry checks the touch itself.
        lead = parse_lead(self.workers.load(touch_id)[1].lead.email, values) if values else None
        self.workers.retry(touch_id, self.clock.now(), by, lead)
