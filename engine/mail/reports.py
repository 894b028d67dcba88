"""Machine-readable parts of bounces and reports: DSN fields, feedback fields, the returned
message's headers, and flufl.bounce's verdict.

RFC 3464 (delivery-status), RFC 5965 (ARF feedback-report), RFC 6522 (multipart/report).
Everything here reads defensively and notes problems instead of raising.
"""

from __future__ import annotations

import logging
import re
from email.message import Message
from email.parser import HeaderParser

from flufl.bounce import all_failures

from engine.domain.inbound_mail import DeliveryStatus, LibraryBounce
from engine.mail.decode import decode_header_value, header_text, part_text

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
# Headers of the returned (bounced) message that let the matcher find our touch.
_RETURNED = ("message-id", "in-reply-to", "references", "to", "subject", "date")
_RETURNED_PREFIX = "x-nurture-"
# An inline copy of the original in a non-standard bounce: header lines, maybe "> "-quoted.
_INLINE_HEADER = re.compile(
    r"^[ \t]*(?:>[ \t]*)?(message-id|in-reply-to|references|x-nurture-[a-z0-9-]+)[ \t]*:[ \t]*"
    r"(.*(?:\n[ \t]+\S.*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_RETURNED_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")

# flufl.bounce logs (and re-raises) its detectors' crashes; we catch and note them instead.
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())


def _field_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The header-like blocks of a report part, as (lower name, decoded value) lists."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib already split the blocks into Messages
        return [
            [(k.lower(), decode_header_value(v)) for k, v in block.items()]
            for block in payload if isinstance(block, Message)
        ]
    return _split_blocks(part_text(part))


def _split_blocks(text: str) -> list[list[tuple[str, str]]]:
    """Parse "Name: value" blocks separated by blank lines, with folded continuations."""
    blocks: list[list[tuple[str, str]]] = [[]]
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
        elif line[0] in " \t" and blocks[-1]:
            name, value = blocks[-1][-1]
            blocks[-1][-1] = (name, f"{value} {line.strip()}")
        elif m := _FIELD.match(line):
            blocks[-1].append((m.group(1).lower(), m.group(2).strip()))
    return [b for b in blocks if b]


def _typed_value(value: str) -> str:
    """Drop the address-type / diagnostic-type prefix: "rfc822; a@b" -> "a@b"."""
    head, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"[A-Za-z0-9-]+", head.strip()):
        return rest.strip()
    return value.strip()


def _address(value: str) -> str:
    return _typed_value(value).strip("<> \t").lower()


def _recipient(fields: dict[str, str]) -> DeliveryStatus:
    return DeliveryStatus(
        final_recipient=_address(fields.get("final-recipient", "")),
        original_recipient=_address(fields.get("original-recipient", "")),
        action=fields.get("action", "").strip().lower(),
        status=(re.search(r"\d\.\d{1,3}\.\d{1,3}", fields.get("status", "")) or [""])[0],
        diagnostic=_typed_value(fields.get("diagnostic-code", "")),
    )


def delivery_status(msg: Message, defects: list[str]) -> tuple[DeliveryStatus, ...]:
    """Per-recipient fields of every message/delivery-status part (RFC 3464 section 2.3)."""
    found: list[DeliveryStatus] = []
    for part in msg.walk():
        # message/global-delivery-status (RFC 6533) and vendors' x-variants read the same.
        if not part.get_content_type().endswith("delivery-status"):
            continue
        try:
            blocks = _field_blocks(part)
        except Exception as exc:  # noqa: BLE001 - a broken report must not hide the rest
            defects.append(f"unreadable delivery-status part: {exc!r}")
            continue
        for block in blocks:
            fields = dict(block)
            if "final-recipient" in fields or "original-recipient" in fields:
                found.append(_recipient(fields))
    return tuple(found)


def feedback_fields(msg: Message) -> dict[str, str]:
    """Feedback-Type and friends from an RFC 5965 message/feedback-report part."""
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            try:
                blocks = _field_blocks(part)
            except Exception:  # noqa: BLE001 - a report we cannot read is still a report
                return {"feedback-type": "unknown"}
            return {k: v for block in blocks for k, v in block if k == "feedback-type"} or {
                "feedback-type": "unknown"
            }
    return {}


def _headers_of(part: Message) -> Message | None:
    """The returned message's header block, from a message/rfc822 or rfc822-headers part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    return HeaderParser().parsestr(part_text(part))


def _from_parts(msg: Message) -> dict[str, str]:
    for part in msg.walk():
        if part is msg or part.get_content_type() not in _RETURNED_TYPES:
            continue
        inner = _headers_of(part)
        if inner is None:
            continue
        found = {k: header_text(inner, k) for k in _RETURNED if inner.get(k) is not None}
        for key in inner:
            if key.lower().startswith(_RETURNED_PREFIX):
                found[key.lower()] = header_text(inner, key)
        if found:
            return found
    return {}


def _from_inline(text: str) -> dict[str, str]:
    """Threading headers quoted inline in a non-standard bounce's text (qmail, old Exim)."""
    found: dict[str, str] = {}
    for m in _INLINE_HEADER.finditer(text):
        found.setdefault(m.group(1).lower(), " ".join(m.group(2).split()))
    return found


def returned_headers(msg: Message, text: str, defects: list[str]) -> dict[str, str]:
    """Headers of the message a bounce returns, so the bounce can be matched to our touch."""
    try:
        return _from_parts(msg) or _from_inline(text)
    except Exception as exc:  # noqa: BLE001 - noted; matching falls back to the sender
        defects.append(f"unreadable returned message: {exc!r}")
        return {}


def bounce_library_verdict(msg: Message, defects: list[str]) -> LibraryBounce | None:
    """flufl.bounce's temporary and permanent failures, or None when it could not run."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # noqa: BLE001 - a library bug must not lose the message
        defects.append(f"flufl.bounce failed: {exc!r}")
        return None
    return LibraryBounce(temporary=_addrs(temporary), permanent=_addrs(permanent))


def _addrs(found: frozenset[bytes | str]) -> tuple[str, ...]:
    out = {(a.decode("latin-1") if isinstance(a, bytes) else a).strip("<> ").lower() for a in found}
    return tuple(sorted(a for a in out if a))
