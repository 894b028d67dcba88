"""Where a reply stops a sequence: each inbound message is parsed, classified, matched to a
lead, recorded and acted on in ONE transaction; the rep is told after the commit.

Human reply -> every live enrollment of the lead ends (handed_off, or stopped when the
sequence says `rules.reply: stop`), its claimed touches are skipped and a Handoff is opened.
Auto-reply -> pause until the return date (at the send window's start) or for
`rules.auto_reply_pause`. Hard bounce -> stop and suppress; soft bounce -> count, suppress
after `rules.soft_bounce_limit`. Unsubscribe request -> stop and suppress. Anything else,
and anything unmatched, is recorded and left alone.

Idempotent: a message seen before (same mailbox, folder, UIDVALIDITY and UID, or the same
Message-ID) is not recorded or acted on twice. Malformed mail never raises: it is recorded as
`other` with the error as its reason. The contract with the watcher (docs/imap.md): handle()
raises RetryLater when the database failed even after a few quick retries, and the watcher
then hands the same message again later; anything else it raises is a bug, and the watcher
skips that message.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from engine.domain.correlation import MatchKey, match_keys, message_ids_in
from engine.domain.inbound import Classification, InboundMail, classify
from engine.domain.lead import LeadRecord
from engine.domain.replytext import reply_new_text
from engine.domain.schedule import add_after, next_open, wall_to_utc
from engine.domain.sequence import Rules
from engine.domain.sequence import Sequence as SequenceModel
from engine.domain.states import EnrollmentState, InboundKind
from engine.errors import ConcurrentUpdate, DatabaseError, RetryLater
from engine.services.ports import Catalog, Clock

log = structlog.get_logger("nurture.inbound")
RAW_LIMIT = 1024 * 1024  # bytes of a message kept in the database (attachments are noise)
RETRY_DELAYS = (0.2, 1.0, 3.0)  # a database hiccup: try again before the watcher moves on
REPLIED = "replied"
# A message dated this much before an enrollment began is older mail, not an answer to it
# (the margin absorbs a sender's clock running slow when only the Date header is known).
CLOCK_SKEW = timedelta(minutes=10)


# --- what this service needs (the consumer owns the interface) -------------------------------

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
    def open_handoff(self, lead_id: int) -> int | None: ...
    def create_handoff(self, lead_id: int, inbound_id: int, sequence: str, rep: str) -> int: ...
    def next_round_robin(self) -> int: ...


class InboundStore(Protocol):
    def duplicate(self, mailbox: str, folder: str, uidvalidity: int, uid: int,
                  message_id: str) -> Duplicate | None: ...
    def transaction(self, now: datetime) -> AbstractContextManager[InboundTx]: ...


# --- results ---------------------------------------------------------------------------------

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
    handoff: HandoffEvent | None = None


@dataclass(frozen=True)
class InboundSettings:
    default_timezone: str = "UTC"
    reps: tuple[str, ...] = ()  # rep names, in round-robin order
    own_addresses: frozenset[str] = frozenset()  # our mailboxes and reps: never a lead's reply


@dataclass(frozen=True)
class Reading:
    """A message as the classifier saw it."""

    mail: InboundMail
    verdict: Classification
    new_text: str


# --- the service -----------------------------------------------------------------------------

class HandleInbound:
    """`handle(raw)`: the watcher's consumer. Thread-safe; call it from the watcher thread."""

    def __init__(self, store: InboundStore, catalog: Catalog, clock: Clock,
                 parse: Callable[[bytes], InboundMail], settings: InboundSettings,
                 on_handoff: Callable[[HandoffEvent], None] | None = None,
                 sleep: Callable[[float], None] = _time.sleep) -> None:
        self.store, self.catalog, self.clock, self.parse = store, catalog, clock, parse
        self.settings, self.on_handoff, self.sleep = settings, on_handoff, sleep

    def __call__(self, raw: RawMessage) -> Handled:
        return self.handle(raw)

    def handle(self, raw: RawMessage) -> Handled:
        # Duplicates (same UID, same Message-ID) are found inside the transaction.
        return self.record(raw, self.read(raw.raw))

    def record(self, raw: RawMessage, reading: Reading) -> Handled:
        """The transaction for a message already read, then the rep is told."""
        done = self._commit(raw, reading)
        self._log(raw, done)
        if done.handoff is not None and self.on_handoff is not None:
            self._tell(done.handoff)
        return done

    # --- reading (outside the transaction: parsing can be slow) ------------------------------

    def read(self, raw: bytes) -> Reading:
        """Parse and classify; a failure is `other` with the error, never an exception."""
        try:
            mail = self.parse(raw)
            verdict = classify(mail)
            text = reply_new_text(mail) if verdict.written_by_person else ""
        except Exception as exc:  # noqa: BLE001 - hostile mail must not stop the watcher
            log.warning("inbound_unreadable", error=repr(exc))
            return Reading(InboundMail(), Classification(
                InboundKind.other, f"could not be read: {exc!r}"[:500]), "")
        return Reading(mail, self._own(mail) or verdict, text)

    def _own(self, mail: InboundMail) -> Classification | None:
        """Mail we sent ourselves (a rep notification, a copy) is never a lead's answer."""
        if mail.header("x-nurture-notification"):
            return Classification(InboundKind.other, "our own handoff notification")
        if mail.from_addr and mail.from_addr in self.settings.own_addresses:
            return Classification(InboundKind.other, f"sent by our own address {mail.from_addr}")
        return None

    # --- the transaction ---------------------------------------------------------------------

    def _commit(self, raw: RawMessage, reading: Reading) -> Handled:
        for delay in (*RETRY_DELAYS, None):
            try:
                with self.store.transaction(self.clock.now()) as tx:
                    return self._in_tx(tx, raw, reading)
            except (ConcurrentUpdate, DatabaseError) as exc:
                if delay is None:
                    raise RetryLater(f"{raw.folder} UID {raw.uid} could not be recorded: "
                                     f"{exc.message}") from exc
                log.warning("inbound_retry", uid=raw.uid, error=exc.message)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _in_tx(self, tx: InboundTx, raw: RawMessage, reading: Reading) -> Handled:
        mail, verdict = reading.mail, reading.verdict
        seen = tx.duplicate(raw.mailbox, raw.folder, raw.uidvalidity, raw.uid,
                            mail.message_id or "")
        if seen is not None:
            return Handled(seen.inbound_id, verdict.kind.value, duplicate=seen.why)
        found = tx.match(keys_for(mail, verdict))
        if found is not None and _new_message_from_lead(verdict, found):
            verdict = Classification(
                InboundKind.human_reply, f"a person's new message from a lead ({verdict.reason})",
                written_by_person=True)
        # When it was written: the server's INTERNALDATE (RawInbound), else its Date. Stored as
        # received_at, so mail read late (a first run, a re-scan) keeps its own date.
        written = getattr(raw, "internal_date", None) or mail.date
        columns = _columns(raw, reading, verdict, found)
        if written is not None:
            columns["received_at"] = min(written, self.clock.now())
        inbound_id = tx.record(**columns)
        done = Handled(inbound_id, verdict.kind.value, verdict.reason,
                       found.lead_id if found else None, found.by if found else "none")
        tx.log("inbound_received", done.lead_id, inbound_id=inbound_id, classified=done.kind,
               reason=verdict.reason[:300], matched_by=done.matched_by,
               mailbox=raw.mailbox, subject=mail.subject[:200])
        if found is not None:
            self._act(tx, found, verdict, inbound_id, done, mail, written)
        return done

    def _act(self, tx: InboundTx, found: Matched, verdict: Classification, inbound_id: int,
             done: Handled, mail: InboundMail, written: datetime | None = None) -> None:
        lead = tx.lead(found.lead_id)
        live = list(tx.live_enrollments(lead.id))  # locked: a send cannot begin meanwhile
        act = Act(self, tx, found, lead, live, inbound_id, done, written)
        if verdict.kind is InboundKind.human_reply:
            act.human_reply()
        elif verdict.kind is InboundKind.auto_reply:
            act.auto_reply(verdict)
        elif verdict.kind is InboundKind.bounce_hard:
            act.bounce(verdict, hard=True)
        elif verdict.kind is InboundKind.bounce_soft:
            act.bounce(verdict, hard=False)
        elif verdict.kind is InboundKind.unsubscribe:
            act.unsubscribe(mail.from_addr)

    # --- after commit ------------------------------------------------------------------------

    def _tell(self, event: HandoffEvent) -> None:
        try:
            assert self.on_handoff is not None
            self.on_handoff(event)
        except Exception as exc:  # noqa: BLE001 - the handoff is committed; telling is best effort
            log.error("handoff_notify_failed", handoff_id=event.handoff_id, error=repr(exc))

    def _log(self, raw: RawMessage, done: Handled) -> None:
        fields = {"mailbox": raw.mailbox, "folder": raw.folder, "uid": raw.uid,
                  "inbound_id": done.inbound_id, "kind": done.kind, "lead_id": done.lead_id,
                  "matched_by": done.matched_by}
        if done.duplicate:
            log.info("inbound_duplicate", **fields, why=done.duplicate)
        elif done.kind == InboundKind.human_reply.value and done.lead_id is not None:
            log.info("reply_detected", **fields, ended=done.ended, in_flight=done.in_flight,
                     handoff_id=done.handoff.handoff_id if done.handoff else None)
        else:
            log.info("inbound_recorded", **fields, reason=done.reason[:200])

    # --- sequence rules ----------------------------------------------------------------------

    def sequence(self, name: str) -> SequenceModel | None:
        return self.catalog.sequences.get(name) if name else None

    def rules(self, name: str) -> Rules:
        seq = self.sequence(name)
        return seq.rules if seq is not None else Rules()


class Act:
    """The actions on one matched lead, inside the transaction."""

    def __init__(self, svc: HandleInbound, tx: InboundTx, found: Matched, lead: LeadRecord,
                 live: list[LiveEnrollment], inbound_id: int, done: Handled,
                 written: datetime | None = None) -> None:
        self.svc, self.tx, self.found, self.lead, self.live = svc, tx, found, lead, live
        self.inbound_id, self.done, self.now = inbound_id, done, svc.clock.now()
        self.written = written

    @property
    def source(self) -> str:
        return f"inbound:{self.inbound_id}"

    def human_reply(self) -> None:
        live, predated = self._answerable()
        if predated and not live:
            return  # old mail (a first run or a re-scan): the enrollments it predates go on
        self.live = live  # the ones it answers (and whose sequence the handoff names)
        stop_only = [e.id for e in live if self.svc.rules(e.sequence).reply == "stop"]
        hand = [e.id for e in live if e.id not in stop_only]
        tx, lead = self.tx, self.lead
        self.done.ended = (tx.end(hand, EnrollmentState.handed_off.value, REPLIED)
                           + tx.end(stop_only, EnrollmentState.stopped.value, REPLIED))
        for eid in self.done.ended:
            tx.log("enrollment_stopped", lead.id, eid, reason=REPLIED, inbound_id=self.inbound_id)
        # Claimed touches and open tasks (a rep must not call someone who already replied).
        self.done.skipped_touches = tx.skip_claimed(
            lead.id, "the lead replied", [e.id for e in live] if predated else None)
        self.done.in_flight = tx.sending(lead.id)
        tx.log("reply_detected", lead.id, inbound_id=self.inbound_id,
               matched_by=self.found.by, stopped=self.done.ended,
               skipped_touches=self.done.skipped_touches, in_flight=self.done.in_flight)
        if live and not hand:
            return  # every live sequence says `rules.reply: stop`: no handoff
        self._hand_off()

    def _answerable(self) -> tuple[list[LiveEnrollment], list[LiveEnrollment]]:
        """The live enrollments this message can answer, and those it predates: a first run
        or a UIDVALIDITY re-scan reads mail the lead sent before being enrolled."""
        at = self.written
        predated = [e for e in self.live if at is not None and e.enrolled_at is not None
                    and at < e.enrolled_at - CLOCK_SKEW]
        if predated:
            self.tx.log("reply_predates_enrollment", self.lead.id, inbound_id=self.inbound_id,
                        written_at=at, enrollments=[e.id for e in predated])
        return [e for e in self.live if e not in predated], predated

    def _hand_off(self) -> None:
        existing = self.tx.open_handoff(self.lead.id)
        if existing is not None:
            self.tx.log("handoff_reply", self.lead.id, handoff_id=existing,
                        inbound_id=self.inbound_id)
            self.done.handoff = HandoffEvent(existing, self.inbound_id, new=False)
            return
        sequence = self.found.sequence or (self.live[0].sequence if self.live else "")
        rep = self.rep_for(self.svc.sequence(sequence))
        hid = self.tx.create_handoff(self.lead.id, self.inbound_id, sequence, rep)
        self.done.handoff = HandoffEvent(hid, self.inbound_id, new=True)

    def rep_for(self, seq: SequenceModel | None) -> str:
        """The sequence's `owner`: a rep's name, `lead` (the lead's owner) or `round-robin`."""
        owner = seq.owner if seq is not None else "round-robin"
        if owner == "lead" and self.lead.owner:
            return self.lead.owner
        if owner not in ("lead", "round-robin"):
            return owner
        reps = self.svc.settings.reps
        return reps[self.tx.next_round_robin() % len(reps)] if reps else ""

    def auto_reply(self, verdict: Classification) -> None:
        for e in self.live:
            seq = self.svc.sequence(e.sequence)
            if seq is not None and seq.rules.auto_reply == "ignore":
                continue
            until = resume_at(verdict.return_date, seq, self.lead, self.now,
                              self.svc.settings.default_timezone)
            if e.paused_until is not None and e.paused_until >= until:
                continue  # already paused for longer
            self.tx.pause(e.id, until)
            self.done.paused[e.id] = until
            back = verdict.return_date
            self.tx.log("enrollment_paused", self.lead.id, e.id, until=until,
                        return_date=back.isoformat() if back else None,
                        inbound_id=self.inbound_id)

    def bounce(self, verdict: Classification, hard: bool) -> None:
        addresses = list(verdict.failed_recipients) or [self.lead.email]
        addresses = [a for a in addresses if a not in self.svc.settings.own_addresses]
        if hard:
            self._stop("bounced")
            self._suppress(addresses, "hard_bounce")
            return
        limit = min([self.svc.rules(e.sequence).soft_bounce_limit for e in self.live]
                    or [self.svc.rules(self.found.sequence).soft_bounce_limit])
        over = []
        for address in addresses:
            count = self.tx.count_soft_bounce(address)
            self.tx.log("soft_bounce_counted", self.lead.id, address=address, count=count,
                        limit=limit, inbound_id=self.inbound_id)
            if count >= limit:
                over.append(address)
        if over:
            self._stop("bounced")
            self._suppress(over, "soft_bounce_repeat")

    def unsubscribe(self, sender: str) -> None:
        self._stop("unsubscribe")
        others = [sender] if sender and sender != self.lead.email else []
        self._suppress([self.lead.email, *others], "unsubscribe")

    def _stop(self, reason: str) -> None:
        ended = self.tx.end([e.id for e in self.live], EnrollmentState.stopped.value, reason)
        for eid in ended:
            self.tx.log("enrollment_stopped", self.lead.id, eid, reason=reason,
                        inbound_id=self.inbound_id)
        self.done.ended += ended

    def _suppress(self, addresses: list[str], reason: str) -> None:
        for address in dict.fromkeys(addresses):
            if self.tx.suppress(address, reason, self.source):
                self.done.suppressed.append(address)


# --- pure helpers ----------------------------------------------------------------------------

def keys_for(mail: InboundMail, verdict: Classification) -> list[MatchKey]:
    """The match keys of a message, in the order correlation.match_keys defines."""
    returned = mail.returned_headers
    returned_ids = [i for i in (mail.returned_message_id,) if i]
    returned_ids += message_ids_in(returned.get("in-reply-to", ""))
    returned_ids += message_ids_in(returned.get("references", ""))
    return match_keys(mail.in_reply_to, mail.references, returned_ids, mail.from_addr,
                      verdict.failed_recipients, verdict.is_bounce)


def resume_at(return_date: Any, seq: SequenceModel | None, lead: LeadRecord, now: datetime,
              default_timezone: str) -> datetime:
    """When an out-of-office pause ends: the return date at the opening of the send window
    in the lead's zone; without a (future) date, now + the sequence's auto_reply_pause, moved
    to the window's next opening (not the hour the auto-reply happened to arrive)."""
    seq_rules = seq.rules if seq is not None else Rules()
    zone = seq.zone(lead.timezone or None, default_timezone) if seq is not None else None
    window = seq.send_window if seq is not None else None
    if zone is None:
        zone = ZoneInfo(default_timezone)
    if return_date is not None:
        start = window.start if window is not None else time(0, 0)
        at, _ = next_open(wall_to_utc(return_date, start, zone), zone, window)
        if at > now:
            return at
    at, _ = next_open(add_after(now, seq_rules.auto_reply_pause, zone, window), zone, window)
    return at


def _new_message_from_lead(verdict: Classification, found: Matched) -> bool:
    """A person's own new message (not a reply) from a lead's address is an answer too."""
    return (verdict.kind is InboundKind.other and verdict.written_by_person
            and found.by == "sender")


def _columns(raw: RawMessage, reading: Reading, verdict: Classification,
             found: Matched | None) -> dict[str, Any]:
    mail = reading.mail
    return {
        "mailbox": raw.mailbox, "folder": raw.folder, "uidvalidity": raw.uidvalidity,
        "uid": raw.uid, "message_id": (mail.message_id or "")[:500],
        "from_addr": mail.from_addr[:320], "subject": mail.subject[:500],
        "kind": verdict.kind.value, "reason": verdict.reason[:1000],
        "failed_recipients": ";".join(verdict.failed_recipients)[:2000],
        "lead_id": found.lead_id if found else None,
        "touch_id": found.touch_id if found else None,
        "matched_by": found.by if found else "none",
        "new_text": reading.new_text[:20000] if verdict.written_by_person else "",
        "raw": bytes(raw.raw[:RAW_LIMIT]),
    }

