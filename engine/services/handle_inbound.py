"""Where a reply stops a sequence: each inbound message is parsed, classified, matched to a
lead, recorded and acted on in ONE transaction; the rep is told after the commit.

Human reply -> every live enrollment of the lead ends (handed_off, or stopped when the
sequence says `rules.reply: stop`), its claimed touches are skipped and a Handoff is opened.
Auto-reply -> pause until the return date (at the send window's start) or for
`rules.auto_reply_pause`. Hard bounce -> stop and suppress; soft bounce -> count, send the
bounced email again after `rules.soft_bounce_retry`, suppress after
`rules.soft_bounce_limit`. Unsubscribe request -> stop and suppress. Anything else, and
anything unmatched, is recorded and left alone.

Idempotent: a message seen before (same mailbox, folder, UIDVALIDITY and UID, or the same
Message-ID) is not recorded or acted on twice. Malformed mail never raises: it is recorded as
`other` with the error as its reason. The contract with the watcher (docs/imap.md): handle()
raises RetryLater when the database failed even after a few quick retries, and the watcher
then hands the same message again later; anything else it raises is a bug, and the watcher
skips that message.

The actions on a matched lead live in services/inbound_actions.py, the ports (what the
store must offer) and the results in services/inbound_ports.py.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from engine.domain.correlation import MatchKey, match_keys, message_ids_in
from engine.domain.inbound import Classification, InboundMail, classify
from engine.domain.inbound_mail import storable
from engine.domain.replytext import reply_new_text
from engine.domain.sequence import Rules
from engine.domain.sequence import Sequence as SequenceModel
from engine.domain.states import InboundKind
from engine.errors import ConcurrentUpdate, DatabaseError, RetryLater
from engine.services.inbound_actions import Act, resume_at
from engine.services.inbound_ports import (
    Handled,
    HandoffEvent,
    InboundStore,
    InboundTx,
    Matched,
    RawMessage,
)
from engine.services.ports import Catalog, Clock

# Re-exported: callers (the daemon, notify, tests) import these from here.
__all__ = ["HandleInbound", "Handled", "HandoffEvent", "InboundSettings", "Reading",
           "keys_for", "resume_at"]

log = structlog.get_logger("nurture.inbound")
RAW_LIMIT = 1024 * 1024  # bytes of a message kept in the database (attachments are noise)
RETRY_DELAYS = (0.2, 1.0, 3.0)  # a database hiccup: try again before the watcher moves on


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
            act.bounce(verdict, hard=False, mail=mail)
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


# --- pure helpers ----------------------------------------------------------------------------

def keys_for(mail: InboundMail, verdict: Classification) -> list[MatchKey]:
    """The match keys of a message, in the order correlation.match_keys defines."""
    returned = mail.returned_headers
    returned_ids = [i for i in (mail.returned_message_id,) if i]
    returned_ids += message_ids_in(returned.get("in-reply-to", ""))
    returned_ids += message_ids_in(returned.get("references", ""))
    return match_keys(mail.in_reply_to, mail.references, returned_ids, mail.from_addr,
                      verdict.failed_recipients, verdict.is_bounce)


def _new_message_from_lead(verdict: Classification, found: Matched) -> bool:
    """A person's own new message (not a reply) from a lead's address is an answer too."""
    return (verdict.kind is InboundKind.other and verdict.written_by_person
            and found.by == "sender")


def _columns(raw: RawMessage, reading: Reading, verdict: Classification,
             found: Matched | None) -> dict[str, Any]:
    mail = reading.mail
    return {
        "mailbox": raw.mailbox, "folder": raw.folder, "uidvalidity": raw.uidvalidity,
        "uid": raw.uid, "message_id": storable((mail.message_id or "")[:500]),
        "from_addr": storable(mail.from_addr[:320]), "subject": storable(mail.subject[:500]),
        "kind": verdict.kind.value, "reason": storable(verdict.reason[:1000]),
        "failed_recipients": storable(";".join(verdict.failed_recipients)[:2000]),
        "lead_id": found.lead_id if found else None,
        "touch_id": found.touch_id if found else None,
        "matched_by": found.by if found else "none",
        "new_text": storable(reading.new_text[:20000]) if verdict.written_by_person else "",
        "raw": bytes(raw.raw[:RAW_LIMIT]),
    }

