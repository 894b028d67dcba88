"""Our Message-IDs: minted when a touch is claimed, stored before SMTP, read back on replies.

A Message-ID names the enrollment, step and repetition it was sent for, plus a random part
so two databases (or a reset one) never mint the same ID. The inbound matcher looks a reply's
In-Reply-To / References up in the touch table first; `parse_message_id` is the fallback that
still works when the touch row is gone.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

PREFIX = "nurture"
_OURS = re.compile(
    rf"^<?{PREFIX}\.(?P<enr>[0-9a-z]+)\.(?P<step>\d+)\.(?P<occ>\d+)\.[0-9a-z]+@(?P<domain>[^>\s]+)>?$"
)
_ANGLE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


@dataclass(frozen=True)
class TouchKey:
    enrollment_id: int
    step_index: int
    occurrence: int


def mint_message_id(domain: str, enrollment_id: int, step_index: int, occurrence: int) -> str:
    """`<nurture.{enrollment}.{step}.{occurrence}.{random}@domain>` (RFC 5322 msg-id)."""
    domain = domain.strip().lower()
    if not domain or any(c in domain for c in "<>@ \t\r\n"):
        raise ValueError(f"'{domain}' is not a domain for a Message-ID")
    token = secrets.token_hex(6)
    return f"<{PREFIX}.{_b36(enrollment_id)}.{step_index}.{occurrence}.{token}@{domain}>"


def parse_message_id(message_id: str) -> TouchKey | None:
    """The touch a Message-ID of ours was minted for; None for anybody else's."""
    m = _OURS.match(message_id.strip())
    if not m:
        return None
    return TouchKey(int(m["enr"], 36), int(m["step"]), int(m["occ"]))


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
