"""Our Message-IDs: minted when a touch is claimed, stored before SMTP, read back on replies.

A Message-ID names the enrollment, step and repetition it was sent for, plus a random part
so two databases (or a reset one) never mint the same ID. The inbound matcher looks a reply's
In-Reply-To / References up in the touch table, and only there: an ID that merely has our
shape (another installation's, a restored database's) names nobody here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "nurture"
_ANGLE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


def mint_message_id(domain: str, enrollment_id: int, step_index: int, occurrence: int) -> str:
    """`<nurture.{enrollment}.{step}.{occurrence}.{random}@domain>` (RFC 5322 msg-id)."""
    domain = domain.strip().lower()
    if not domain or any(c in domain for c in "<>@ \t\r\n"):
        raise ValueError(f"'{domain}' is not a domain for a Message-ID")
    token = secrets.token_hex(6)
    return f"<{PREFIX}.{_b36(enrollment_id)}.{step_index}.{occurrence}.{token}@{domain}>"


# local@domain.tld with nothing a header could misread: what compose writes into From/To.
_SENDABLE = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+\.[^\s@<>()\[\],;:\"\\]+$")


def sendable_address(address: str) -> bool:
    """Whether nurture can put `address` in a From/To header (compose and the config agree)."""
    return bool(_SENDABLE.match(address))


def domain_of(address: str) -> str:
    """The domain part of an address (`sales@example.com` -> `example.com`)."""
    return address.rpartition("@")[2].strip().lower()


def references_after(previous_references: str, previous_message_id: str) -> str:
    """The References of a reply to a message (RFC 5322 3.6.4): its References + its ID."""
    ids = _ANGLE_ID.findall(previous_references or "")
    if previous_message_id and previous_message_id not in ids:
        ids.append(previous_message_id)
    return " ".join(ids)


def message_ids_in(header_value: str) -> list[str]:
    """Every `<id@domain>` in an In-Reply-To or References value, in order."""
    return _ANGLE_ID.findall(header_value or "")


def reply_subject(previous: str) -> str:
    """`Re: ` once, however many times the thread was answered."""
    stripped = re.sub(r"^\s*((re|aw|sv)\s*:\s*)+", "", previous, flags=re.IGNORECASE)
    return f"Re: {stripped}"


def _b36(n: int) -> str:
    if n < 0:
        raise ValueError("ids are not negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


# --- matching inbound mail to a lead (the order is the contract) ---------------------------

@dataclass(frozen=True)
class MatchKey:
    """One thing to look up, in order: a Message-ID (against our touches) or an address."""

    by: str  # in-reply-to | references | returned-message | sender | failed-recipient
    message_id: str = ""
    address: str = ""


def match_keys(
    in_reply_to: str | None, references: Sequence[str], returned_ids: Sequence[str],
    sender: str, failed_recipients: Sequence[str], is_bounce: bool,
) -> list[MatchKey]:
    """What to try, best evidence first: our Message-IDs, then addresses.

    In-Reply-To names the message answered; References are tried newest first (the last one
    is the direct parent, RFC 5322 3.6.4). A bounce's returned message names our touch too.
    Addresses come last because people reply from other addresses and aliases: a bounce is
    matched by the address that failed (its sender is a mailer daemon), anything else by
    its sender.
    """
    keys: list[MatchKey] = []
    if in_reply_to:
        keys.append(MatchKey("in-reply-to", message_id=in_reply_to.strip()))
    keys += [MatchKey("references", message_id=m.strip()) for m in reversed(references)]
    keys += [MatchKey("returned-message", message_id=m.strip()) for m in returned_ids]
    if is_bounce:
        keys += [MatchKey("failed-recipient", address=a.strip().lower())
                 for a in failed_recipients]
    elif sender:
        keys.append(MatchKey("sender", address=sender.strip().lower()))
    return _unique(keys)


def _unique(keys: list[MatchKey]) -> list[MatchKey]:
    """Each id or address once, at its first (strongest) place."""
    seen: set[str] = set()
    out = []
    for k in keys:
        value = k.message_id or k.address
        if value and value not in seen:
            seen.add(value)
            out.append(k)
    return out
