"""Classification of inbound mail: human reply, auto-reply, bounce, unsubscribe or other.

`classify(mail)` runs the rules in a fixed order and returns the first that fires, with
its reason. The order is what keeps a person's answer safe: machine-made reports come
first and are recognised by structure (report parts, daemon senders, RFC 3834 headers),
while every rule that reads words reads only the new text, never the quoted thread. The
rules and what they achieve on the shared corpus are in docs/classification.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from engine.domain import autoreplies, bounces
from engine.domain.inbound_mail import (
    DeliveryStatus,
    InboundMail,
    LibraryBounce,
    is_reply_subject,
)
from engine.domain.replytext import Line, label_lines, new_text
from engine.domain.returndate import find_return_date
from engine.domain.states import InboundKind
from engine.domain.unsubscribes import address_reason, unsubscribe_reason

__all__ = [
    "Classification", "DeliveryStatus", "InboundMail", "LibraryBounce", "classify",
    "is_reply_subject",
]

_FORWARD = re.compile(r"^\s*(?:fwd?|fw|tr|wg|rv|enc|i)\s*:", re.IGNORECASE)
# reply+<token>@ / bounce+<token>@: an address minted for one thread (VERP-style).
# A long random tag, not a human-chosen one like "+newsletter".
_THREAD_ADDRESS = re.compile(r"\+(?:[A-Za-z0-9_=-]{16,}|(?=[A-Za-z_=-]*\d)[A-Za-z0-9_=-]{10,})@")
_SPAM_FLAG = re.compile(r"^\s*yes\b", re.IGNORECASE)


@dataclass(frozen=True)
class Classification:
    """The decision about one inbound message, with the rule that made it."""

    kind: InboundKind
    reason: str
    failed_recipients: tuple[str, ...] = ()
    return_date: date | None = None
    written_by_person: bool = False  # human reply, unsubscribe, or a person's new message

    @property
    def is_bounce(self) -> bool:
        return self.kind in (InboundKind.bounce_hard, InboundKind.bounce_soft)


def classify(mail: InboundMail) -> Classification:
    """What kind of message this is, and which rule said so."""
    fresh = new_text(mail.text)
    for rule in _RULES:
        found = rule(mail, fresh)
        if found is not None:
            return found
    return Classification(InboundKind.human_reply, _reply_evidence(mail), written_by_person=True)


def _report(mail: InboundMail, _fresh: str) -> Classification | None:
    if mail.report_type == "feedback-report" or "message/feedback-report" in mail.part_types:
        kind = mail.header("feedback-type") or "unknown"
        return Classification(InboundKind.other, f"feedback report (ARF, Feedback-Type: {kind})")
    if mail.report_type == "disposition-notification" or (
        "message/disposition-notification" in mail.part_types
    ):
        return Classification(InboundKind.other, "read receipt (RFC 8098 disposition notification)")
    return None


def _challenge(mail: InboundMail, fresh: str) -> Classification | None:
    # Before bounces: some challenge systems dress their request as a delivery report.
    why = autoreplies.challenge_reason(mail, fresh)
    return Classification(InboundKind.auto_reply, why) if why else None


def _bounce(mail: InboundMail, _fresh: str) -> Classification | None:
    found = bounces.find_bounce(mail)
    if found is None:
        return None
    kind = InboundKind.bounce_hard if found.hard else InboundKind.bounce_soft
    return Classification(kind, found.reason, failed_recipients=found.recipients)


def _delivery_notice(mail: InboundMail, _fresh: str) -> Classification | None:
    if mail.delivery_status or bounces.has_delivery_report(mail):
        actions = ", ".join(sorted({d.action for d in mail.delivery_status})) or "no failure"
        return Classification(InboundKind.other, f"delivery notice ({actions})")
    return None


def _to_unsubscribe_address(mail: InboundMail, _fresh: str) -> Classification | None:
    """Our unsubscribe address only receives requests to stop, whatever the mail client's
    wording (one-click mailto messages say they were generated automatically)."""
    why = address_reason(mail)
    return None if why is None else Classification(InboundKind.unsubscribe, why,
                                                   written_by_person=True)


def _auto_reply(mail: InboundMail, fresh: str) -> Classification | None:
    why = autoreplies.auto_reply_reason(mail, fresh)
    if why is None:
        return None
    sent = mail.date.date() if mail.date else None
    back = find_return_date(f"{mail.subject}\n{fresh}", sent)
    return Classification(InboundKind.auto_reply, why, return_date=back)


def _unsubscribe(mail: InboundMail, fresh: str) -> Classification | None:
    why = unsubscribe_reason(mail, fresh)
    if why is None:
        return None
    return Classification(InboundKind.unsubscribe, why, written_by_person=True)


def _not_a_reply(mail: InboundMail, _fresh: str) -> Classification | None:
    """List traffic, flagged spam, forwards and new messages: no answer to a touch."""
    threaded = bool(mail.in_reply_to or mail.references)
    if _FORWARD.match(mail.subject) and not threaded:
        return Classification(InboundKind.other, "a forwarded message, not a reply",
                              written_by_person=True)
    if _is_reply(mail):
        return None
    if mail.header("list-id"):
        list_id = mail.header("list-id")[:80]
        return Classification(InboundKind.other, f"mailing-list message (List-Id {list_id})")
    if _SPAM_FLAG.match(mail.header("x-spam-flag") or mail.header("x-spam-status")):
        return Classification(InboundKind.other, "flagged as spam by a filter")
    return Classification(InboundKind.other, "a new message, not a reply (no In-Reply-To, "
                          "References, reply subject or quoted thread)", written_by_person=True)


def _is_reply(mail: InboundMail) -> bool:
    return bool(_reply_signals(mail))


def _reply_signals(mail: InboundMail) -> list[str]:
    signals = []
    if mail.in_reply_to or mail.references:
        signals.append("In-Reply-To/References")
    if is_reply_subject(mail.subject):
        signals.append("reply subject")
    if any(_THREAD_ADDRESS.search(addr) for addr in mail.to):
        signals.append("sent to a per-thread reply address")
    if any(lab in (Line.attribution, Line.header, Line.marker) for lab in label_lines(
        mail.text.splitlines()[:400]
    )):
        signals.append("quoted thread")
    return signals


def _reply_evidence(mail: InboundMail) -> str:
    return "a person's reply (" + ", ".join(_reply_signals(mail)) + ")"


_RULES: tuple[Callable[[InboundMail, str], Classification | None], ...] = (
    _report, _challenge, _bounce, _delivery_notice, _to_unsubscribe_address, _auto_reply,
    _unsubscribe, _not_a_reply,
)
