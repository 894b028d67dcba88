"""Sending due touches: claim, re-check, render, send over SMTP, record (one pass at a time).

Per touch: one transaction re-checks the enrollment under lock and moves the touch to
`sending` with its bytes stored (begin_send); then the SMTP transaction; then one
transaction records the outcome and advances the enrollment (finish). A touch is never handed
to SMTP unless the database said `sending` first. See docs/send-state-machine.md.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import structlog

from engine.domain.correlation import domain_of, mint_message_id
from engine.domain.progress import place
from engine.domain.sequence import Sequence
from engine.domain.touch import (
    MAX_ATTEMPTS,
    MAX_DEFERRALS,
    Advance,
    Begun,
    Claim,
    Decision,
    Defer,
    Delivered,
    DueEnrollment,
    Fail,
    Failed,
    Finished,
    NoStep,
    Outcome,
    Retry,
    SendContext,
    SendEmail,
    TouchPlan,
    backoff,
)
from engine.errors import (
    MailboxError,
    MailboxQuotaExhausted,
    MailboxRejected,
    RecipientRejected,
    RenderError,
    ScheduleError,
    SendError,
    TransientSendError,
)
from engine.services.batching import Batched
from engine.services.messages import MessageMaker
from engine.services.planning import Planning
from engine.services.ports import Catalog, Clock, MailboxStore, QueueStore, Sender, SentCopy
from engine.settings import MailboxConfig

log = structlog.get_logger("nurture.send")
# What a touch's own computation may raise (schedule maths, a resource-hungry template):
# that touch fails. Anything else (the database) is retried: see process().
UNMAKEABLE = (ArithmeticError, ValueError, TypeError, LookupError, AttributeError,
              RecursionError, MemoryError, RenderError, ScheduleError)
FINISH_TRIES = 5  # a delivered touch must be recorded: retry the commit before giving up
ON_FINISH_RETRY = timedelta(minutes=15)  # look again for an on_finish target not loaded
# Touches begun per SMTP connection (see in_flight). 1: a touch is begun only when a
# connection is free for it, so the enrollment re-check inside begin_send is the last word
# right before SMTP (a reply committed meanwhile stops it; issue 4's race). Begun further
# ahead (4 was tried), a touch waited `sending` while a reply or a quota pause arrived and
# went out anyway.
SEND_AHEAD = 1


@dataclass(frozen=True)
class SendSettings:
    worker: str
    batch_size: int = 100
    lease: timedelta = timedelta(seconds=60)
    default_timezone: str = "UTC"


@dataclass
class PassReport:
    """What one pass did; `more` means a batch was full (more may be due right now)."""

    claimed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    more: bool = False
    wake_at: datetime | None = None

    def tally(self, what: str) -> None:
        self.counts[what] += 1


class SendDue:
    def __init__(
        self, *, queue: QueueStore, mailbox_store: MailboxStore, catalog: Catalog,
        sender: Sender, maker: MessageMaker, clock: Clock,
        mailboxes: Mapping[str, MailboxConfig], settings: SendSettings,
        sent_copy: SentCopy | None = None,
    ) -> None:
        self.queue, self.mstore, self.catalog = queue, mailbox_store, catalog
        self.sender, self.maker, self.clock = sender, maker, clock
        self.mailboxes, self.settings, self.sent_copy = mailboxes, settings, sent_copy
        self.plan = Planning(catalog.sequences, settings.default_timezone)
        self.stopping = False
        self._paused: dict[str, datetime] = {}
        self._leftovers: list[Callable[[], object]] = []
        # Touches that reach begin or finish together share one transaction and commit:
        # a connection's next touch is begun while its last one is recorded.
        self._write = Batched(self._write_batch)

    # --- one pass ------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        """Claim and process what is due now, mailbox by mailbox, within limits and pauses."""
        report = PassReport()
        await self._run_leftovers()
        now = self.clock.now()
        paused = await asyncio.to_thread(self.mstore.paused, now)
        self._paused = {name: until for name, (until, _) in paused.items()}
        wakes: list[datetime] = list(self._paused.values())
        eligible: list[str] = []
        work = []
        try:
            for name, seqs in self._sequences_by_mailbox().items():
                if name in self._paused or self.stopping:
                    continue
                claims, wake = await self._claim(name, seqs, now, report)
                if wake is not None:
                    wakes.append(wake)
                else:
                    eligible += seqs
                work.append(self._run_claims(name, claims, report))
        finally:
            # Claims already made are worked (or handed back) even if a later mailbox's
            # claim failed, and every mailbox's SMTP transactions end before the pass does.
            results = await asyncio.gather(*work, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        nxt = await asyncio.to_thread(self.queue.next_wakeup, eligible)
        report.wake_at = min([w for w in [nxt, *wakes] if w is not None], default=None)
        return report

    def _sequences_by_mailbox(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for seq in self.catalog.sequences.values():
            if seq.mailbox in self.mailboxes:
                groups[seq.mailbox].append(seq.name)
        return groups

    async def _claim(self, name: str, seqs: list[str], now: datetime,
                     report: PassReport) -> tuple[list[Claim], datetime | None]:
        """Claims within the mailbox's limits; a wake time when a limit holds it back."""
        cfg = self.mailboxes[name]
        minute, day = await asyncio.to_thread(self.mstore.sent_counts, name, now)
        room = min(cfg.per_minute_limit - minute, cfg.daily_limit - day)
        if room <= 0:
            wait = timedelta(minutes=1) if cfg.daily_limit > day else timedelta(minutes=15)
            log.info("mailbox_limit_reached", mailbox=name, last_minute=minute, last_day=day)
            return [], now + wait
        limit = min(self.settings.batch_size, room)
        w, lease = self.settings.worker, self.settings.lease
        # Counted again inside each claim's transaction, with what other workers hold.
        budget = self.mstore.budget(name, cfg.per_minute_limit, cfg.daily_limit, now)
        claims = await asyncio.to_thread(self.queue.claim_retries, w, seqs, now, limit, lease,
                                          budget)
        try:
            claims += await asyncio.to_thread(self.queue.claim_due, w, seqs, now,
                                              limit - len(claims), lease, self._planner(name),
                                              budget)
        except Exception:
            # The retries claimed a moment ago would wait, held by us, until a restart.
            self._later(partial(self.queue.hand_back, claims, w, now))
            raise
        report.claimed += len(claims)
        if budget.held_back or len(claims) >= limit < self.settings.batch_size:
            # held back by the limits: look again when a slot frees
            return claims, now + timedelta(seconds=60 / max(cfg.per_minute_limit, 1))
        if len(claims) >= limit:  # a full batch: more may be due right now
            report.more = True
        return claims, None

    def _planner(self, mailbox: str):  # noqa: ANN202 - a Planner for QueueStore.claim_due
        domain = domain_of(self.mailboxes[mailbox].address)

        def plan(due: DueEnrollment) -> TouchPlan | NoStep | Defer:
            seq = self.catalog.sequences[due.sequence]
            # The step by name in the sequence as loaded now: an edit may have moved it.
            at = place(seq, due.step_name, due.step_index, due.occurrence, due.done)
            if at is None:
                return self._finished(seq, due)
            step = seq.steps[at.step_index]
            return TouchPlan(
                step.name, step.channel, step.task.kind.value if step.task else "", mailbox,
                mint_message_id(domain, due.id, at.step_index, at.occurrence),
                at.step_index, at.occurrence,
            )
        return plan

    def _finished(self, seq: Sequence, due: DueEnrollment) -> NoStep | Defer:
        """No step is left for a due enrollment: finish it, with its on_finish if loaded."""
        reason = ("it had every step the sequence has now" if due.step_name
                  else "the sequence has no step left for it")
        if seq.on_finish is None or due.lead is None:
            return NoStep(reason)
        now = self.clock.now()
        advance = self.plan.finish(seq, due.lead(), now, len(seq.steps))
        if advance.on_finish_unavailable:
            return Defer(now + ON_FINISH_RETRY, f"on_finish '{advance.on_finish_unavailable}' "
                         "is not loaded")
        return NoStep(reason, advance.follow_on)

    async def _run_claims(self, mailbox: str, claims: list[Claim], report: PassReport) -> None:
        # At most in_flight(connections) touches of a mailbox are begun and not yet through
        # SMTP, so each begun touch goes to SMTP at once (see in_flight).
        n = in_flight(self.mailboxes[mailbox].smtp.connections)
        slots = asyncio.Semaphore(n)
        # ... and at most twice that many begun and not yet recorded: a touch frees its
        # connection once its SMTP transaction is over, not its place here, so a finish
        # that the database refuses for a while holds back new touches (the in-doubt bound)
        unrecorded = asyncio.Semaphore(2 * n)
        unstarted: list[Claim] = []
        await asyncio.gather(*(self._guarded(claim, slots, unrecorded, report, unstarted)
                               for claim in claims))
        if unstarted:  # stopping: what was not begun is due again for any worker, now
            n = await asyncio.to_thread(self.queue.hand_back, unstarted, self.settings.worker,
                                        self.clock.now())
            log.info("claims_handed_back", mailbox=mailbox, count=n)

    async def _guarded(self, claim: Claim, slots: asyncio.Semaphore,
                       unrecorded: asyncio.Semaphore, report: PassReport,
                       unstarted: list[Claim]) -> None:
        async with unrecorded:
            await slots.acquire()
            slot = _Slot(slots)
            try:
                # Checked between touches: a SIGTERM mid-batch lets the SMTP transactions
                # in flight finish and be recorded, and hands the rest back (Message-IDs
                # kept).
                if self.stopping:
                    unstarted.append(claim)
                    return
                await self.process(claim, report, slot)
            finally:
                slot.free()

    # --- one touch -----------------------------------------------------------------------

    async def process(self, claim: Claim, report: PassReport, slot: _Slot | None = None,
                      ) -> None:
        """One touch, start to end; whatever goes wrong with it stays with it. `slot` is
        freed once its SMTP transaction is over, so the next touch is begun (re-checked
        right before its own SMTP transaction) while this one is recorded."""
        at_smtp: list[bool] = []  # set once the touch is handed to SMTP
        try:
            await self._process(claim, report, slot or _Slot(None), at_smtp)
        except Exception as exc:  # noqa: BLE001 - one bad touch never stops the pass
            report.tally("error")
            reason = f"{type(exc).__name__}: {exc}"
            log.error("touch_error", **_ids(claim), reason=reason, exc_info=True)
            now, attempts = self.clock.now(), claim.attempts + 1
            retry_at = now + backoff(attempts) if attempts < MAX_ATTEMPTS else None
            # A no-op unless still `claimed` by us: a `sending` touch waits in _leftovers.
            self._later(partial(self.queue.give_back, claim, self.settings.worker, now,
                                retry_at, f"error: {reason}"))
            if not at_smtp:
                # ... or begun (its begin committed though the call failed) and never handed
                # to SMTP: it waits for a retry like a 4xx, instead of staying `sending`.
                # Whichever of the two finds the touch in its state applies; the other is a
                # no-op.
                outcome = (Retry(retry_at, None, f"error: {reason}") if retry_at is not None
                           else Failed(None, f"error: {reason}", False))
                self._later(partial(self.queue.finish, claim, outcome, None, now))
            await self._run_leftovers()

    async def _process(self, claim: Claim, report: PassReport, slot: _Slot,
                       at_smtp: list[bool]) -> None:
        seq = self.catalog.sequences.get(claim.sequence)
        begun = await self._write(claim)
        if begun.decision is None or begun.context is None:
            report.tally("blocked")
            log.info("touch_blocked", **_ids(claim), reason=begun.blocked)
            return
        decision = begun.decision
        if not isinstance(decision, SendEmail):
            report.tally(type(decision).__name__.lower())
            log.info(f"touch_{type(decision).__name__.lower()}", **_ids(claim),
                     **_why(decision))
            return
        at_smtp.append(True)
        outcome = await self._smtp(claim, decision)
        slot.free()
        advance, halt = None, ""
        if isinstance(outcome, Delivered) and seq is not None:
            try:
                advance = self.plan.advance(seq, begun.context.lead, claim.step_index,
                                            claim.occurrence, outcome.at, claim.step_name)
            except Exception as exc:  # noqa: BLE001 - it left: record it, stop the rest
                halt = f"sent, but the next step's time cannot be computed: {exc}"
                log.error("touch_error", **_ids(claim), reason=halt)
        recorded = await self._finish(claim, outcome, advance, halt)
        self._log_outcome(claim, outcome, recorded, report)
        if recorded and isinstance(outcome, Delivered):
            await self._copy_to_sent(claim, decision.raw)

    def _write_batch(self, items: list[Claim | Finished]) -> list[Begun | bool | Exception]:
        now = self.clock.now()
        return self.queue.send_writes(items, self.settings.worker, now, self.settings.lease,
                                      partial(self._decide_at, now))

    def _decide_at(self, now: datetime, ctx: SendContext) -> Decision:
        return self._decide(self.catalog.sequences.get(ctx.claim.sequence), now, ctx)

    def _decide(self, seq: Sequence | None, now: datetime, ctx: SendContext) -> Decision:
        """Inside the begin-send transaction: what to do with this touch (no I/O here)."""
        claim = ctx.claim
        until = self._paused.get(claim.mailbox)
        if until is not None and until > now:
            return Defer(until, f"mailbox {claim.mailbox} paused")
        mbox = self.mailboxes.get(claim.mailbox)
        if seq is None or mbox is None:
            return Defer(now + timedelta(minutes=15), "sequence or mailbox not loaded")
        try:
            return self.maker.decide(seq, mbox, ctx, now)
        except UNMAKEABLE as exc:
            # This lead's touch cannot be made (a due time out of range, a template that
            # exhausts memory): fail it with the reason, never retry it into a crash loop.
            reason = f"this touch cannot be made: {type(exc).__name__}: {exc}"
            log.error("touch_error", **_ids(claim), reason=reason)
            return Fail(reason)

    async def _smtp(self, claim: Claim, mail: SendEmail) -> Outcome:
        try:
            reply = await self.sender.send(claim.mailbox, mail.sender, mail.recipient, mail.raw)
        except SendError as exc:
            return await self._failure(claim, exc)
        return Delivered(reply.code, reply.text, self.clock.now())

    async def _failure(self, claim: Claim, exc: SendError) -> Outcome:
        now, attempts = self.clock.now(), claim.attempts + 1
        said = exc.message
        if isinstance(exc, (MailboxQuotaExhausted, MailboxRejected)):
            until = now + timedelta(seconds=exc.retry_after or 60)
            self._paused[claim.mailbox] = until
            await asyncio.to_thread(self.mstore.pause, claim.mailbox, until, said[:200])
            log.warning("mailbox_paused", mailbox=claim.mailbox, until=until.isoformat(),
                        reason=said)
            if claim.deferrals + 1 >= MAX_DEFERRALS:
                # Not an attempt, but not forever either: a reply misread as the mailbox's
                # fault would otherwise pause the mailbox for this one touch endlessly.
                return Failed(exc.code, f"not sent: the relay refused it {MAX_DEFERRALS} "
                              f"times as a mailbox problem; last reply: {said}", False)
            return Retry(until, exc.code, said, counts=False)
        if isinstance(exc, TransientSendError):
            if attempts >= MAX_ATTEMPTS:
                return Failed(exc.code, f"gave up after {attempts} attempts: {said}", False)
            return Retry(now + backoff(attempts), exc.code, said)
        return Failed(exc.code, said, bounce=isinstance(exc, RecipientRejected))

    async def _finish(self, claim: Claim, outcome: Outcome, advance: Advance | None,
                      halt: str = "") -> bool:
        done = Finished(claim, outcome, advance, halt)
        for attempt in range(FINISH_TRIES):
            try:
                return await self._write(done)
            except Exception:
                if attempt == FINISH_TRIES - 1:
                    # Still `sending` (our lease kept by the heartbeat): recorded by a later
                    # pass once the database answers; in doubt only if we stop first.
                    self._later(partial(self.queue.finish, claim, outcome, advance,
                                        self.clock.now(), halt))
                    raise
                log.warning("touch_finish_retry", **_ids(claim), exc_info=True)
                await asyncio.sleep(0.2 * 2**attempt)
        return False

    def _later(self, write: Callable[[], object]) -> None:
        self._leftovers.append(write)

    async def _run_leftovers(self) -> None:
        """Writes that failed (the database was away): tried again, kept until they work."""
        pending, self._leftovers = self._leftovers, []
        for write in pending:
            try:
                await asyncio.to_thread(write)
            except Exception as exc:  # noqa: BLE001 - still away: next pass
                log.warning("touch_write_pending", error=f"{type(exc).__name__}: {exc}")
                self._leftovers.append(write)

    async def _copy_to_sent(self, claim: Claim, raw: bytes) -> None:
        if self.sent_copy is None or not self.sent_copy.configured(claim.mailbox):
            return
        try:
            await self.sent_copy.append(claim.mailbox, raw)
        except MailboxError as exc:
            log.warning("sent_copy_failed", **_ids(claim), error=exc.message)

    def _log_outcome(self, claim: Claim, outcome: Outcome, recorded: bool,
                     report: PassReport) -> None:
        if not recorded:
            report.tally("lost")
            log.error("touch_claim_lost", **_ids(claim), outcome=type(outcome).__name__)
        elif isinstance(outcome, Delivered):
            report.tally("sent")
            log.info("touch_sent", **_ids(claim), smtp=f"{outcome.code} {outcome.response}")
        elif isinstance(outcome, Retry):
            report.tally("retry")
            log.warning("touch_retry", **_ids(claim), retry_at=outcome.at.isoformat(),
                        error=outcome.error)
        else:
            report.tally("failed")
            log.warning("touch_failed", **_ids(claim), code=outcome.code, error=outcome.error,
                        bounce=outcome.bounce)


class _Slot:
    """A held place in a mailbox's semaphore, freed once (after SMTP, or at the end)."""

    def __init__(self, slots: asyncio.Semaphore | None) -> None:
        self._slots = slots

    def free(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()


def in_flight(connections: int) -> int:
    """How many touches of a mailbox may be begun and not yet through SMTP: SEND_AHEAD per
    SMTP connection. A touch whose SMTP transaction is over frees its place before it is
    recorded, so a crash leaves at most twice this many in doubt, half of them sent."""
    return SEND_AHEAD * max(connections, 1)


def _ids(claim: Claim) -> dict[str, object]:
    return {"touch_id": claim.touch_id, "lead_id": claim.lead_id,
            "enrollment_id": claim.enrollment_id, "sequence": claim.sequence,
            "step": claim.step_index, "message_id": claim.message_id}


def _why(decision: Decision) -> dict[str, object]:
    reason = getattr(decision, "reason", "")
    return {"reason": reason} if reason else {}
