"""What a matched inbound message does to its lead, inside handle_inbound's transaction:
hand off on a human reply, pause on an auto-reply, stop and suppress on a hard bounce or an
unsubscribe request; on a soft bounce, count it and send the bounced email again after
`rules.soft_bounce_retry`, until `rules.soft_bounce_limit` suppresses the address.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.domain.inbound import Classification, InboundMail
from engine.domain.lead import LeadRecord
from engine.domain.schedule import add_after, next_open, wall_to_utc
from engine.domain.sequence import OWNER_WORDS, Rules
from engine.domain.sequence import Sequence as SequenceModel
from engine.domain.states import EnrollmentState
from engine.services.inbound_ports import (
    Handled,
    HandoffEvent,
    InboundTx,
    LiveEnrollment,
    Matched,
)

if TYPE_CHECKING:
    from engine.services.handle_inbound import HandleInbound

REPLIED = "replied"
# A message dated this much before an enrollment began is older mail, not an answer to it
# (the margin absorbs a sender's clock running slow when only the Date header is known).
CLOCK_SKEW = timedelta(minutes=10)
_DELAY_SUBJECT = re.compile(r"\bdelay(?:ed)?\b|\bwarn(?:ing|ung)\b|not yet been delivered|"
                            r"still being retried", re.IGNORECASE)


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
        rep, unassigned = self.rep_for(self.svc.sequence(sequence))
        hid = self.tx.create_handoff(self.lead.id, self.inbound_id, sequence, rep,
                                     note=f"unassigned: {unassigned}" if unassigned else "")
        if unassigned:  # still in the queue, open to any rep; said where the operator looks
            self.tx.log("handoff_unassigned", self.lead.id, handoff_id=hid, reason=unassigned,
                        inbound_id=self.inbound_id)
        self.done.handoff = HandoffEvent(hid, self.inbound_id, new=True)

    def rep_for(self, seq: SequenceModel | None) -> tuple[str, str]:
        """The rep from the sequence's `owner` (a rep's name, `lead`: the lead's owner, or
        `round-robin`), or "" and why when no configured rep fits."""
        owner = seq.owner if seq is not None else "round-robin"
        reps = self.svc.settings.reps
        if owner == "lead" and self.lead.owner:
            owner = self.lead.owner
            who = f"the lead's owner '{owner}'"
        elif owner in OWNER_WORDS:
            if not reps:
                return "", "no reps are configured (nurture.yaml, reps:)"
            return reps[self.tx.next_round_robin() % len(reps)], ""
        else:
            who = f"owner '{owner}' of sequence '{seq.name if seq else ''}'"
        if owner in reps:
            return owner, ""
        return "", f"{who} is not a configured rep (nurture.yaml, reps:)"

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

    def bounce(self, verdict: Classification, hard: bool,
               mail: InboundMail | None = None) -> None:
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
            return
        self._retry_bounced(verdict, mail)

    def _retry_bounced(self, verdict: Classification, mail: InboundMail | None) -> None:
        """Below the limit: the email that bounced goes out again later (the same touch)."""
        touch_id, why = self.found.touch_id, ""
        if touch_id is None or self.found.by == "sender":
            why = "the bounce does not name one of our emails"
        elif mail is not None and relay_still_trying(mail):
            why = "a delay notice: the relay is still trying to deliver it"
        if not why and touch_id is not None:
            seq = self.svc.sequence(self.found.sequence)
            at = retry_at(seq, self.lead, self.now, self.svc.settings.default_timezone)
            if self.tx.retry_touch(touch_id, at, f"soft bounce: {verdict.reason}"):
                self.done.retried.append(touch_id)
                return
            why = "the email is not a sent one of a live enrollment"
        self.tx.log("soft_bounce_not_retried", self.lead.id, touch_id=touch_id, reason=why,
                    inbound_id=self.inbound_id)

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


def retry_at(seq: SequenceModel | None, lead: LeadRecord, now: datetime,
             default_timezone: str) -> datetime:
    """When a soft-bounced email goes out again: now + rules.soft_bounce_retry, at the send
    window's next opening in the lead's zone."""
    seq_rules = seq.rules if seq is not None else Rules()
    zone, window = _zone_window(seq, lead, default_timezone)
    at, _ = next_open(add_after(now, seq_rules.soft_bounce_retry, zone, window), zone, window)
    return at


def relay_still_trying(mail: InboundMail) -> bool:
    """A delay notice (RFC 3464 Action: delayed, or a 'warning/delayed' subject without a
    report): the relay still holds our email, so sending it again could deliver it twice."""
    actions = {d.action for d in mail.delivery_status if d.action}
    if actions:
        return actions <= {"delayed", "relayed", "expanded", "delivered"}
    return bool(_DELAY_SUBJECT.search(mail.subject))


def _zone_window(seq: SequenceModel | None, lead: LeadRecord,
                 default_timezone: str) -> tuple[ZoneInfo, Any]:
    zone = seq.zone(lead.timezone or None, default_timezone) if seq is not None else None
    return zone or ZoneInfo(default_timezone), seq.send_window if seq is not None else None


def resume_at(return_date: Any, seq: SequenceModel | None, lead: LeadRecord, now: datetime,
              default_timezone: str) -> datetime:
    """When an out-of-office pause ends: the return date at the opening of the send window
    in the lead's zone; without a (future) date, now + the sequence's auto_reply_pause, moved
    to the window's next opening (not the hour the auto-reply happened to arrive)."""
    seq_rules = seq.rules if seq is not None else Rules()
    zone, window = _zone_window(seq, lead, default_timezone)
    if return_date is not None:
        start = window.start if window is not None else time(0, 0)
        at, _ = next_open(wall_to_utc(return_date, start, zone), zone, window)
        if at > now:
            return at
    at, _ = next_open(add_after(now, seq_rules.auto_reply_pause, zone, window), zone, window)
    return at
