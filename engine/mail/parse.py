"""Raw inbound bytes -> `InboundMail`: decoded headers, best text body, DSN fields, returned ids.

Never raises: mail written by strangers is malformed in every way imaginable (bad charsets,
truncated MIME, no headers at all), so every step falls back to what could be read and
notes the problem in `defects`.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from types import MappingProxyType

import html2text

from engine.domain.inbound_mail import InboundMail
from engine.domain.schedule import assume_utc
from engine.mail.decode import decode_bytes, decode_header_value, header_text, part_text
from engine.mail.reports import (
    bounce_library_verdict,
    delivery_status,
    feedback_fields,
    returned_headers,
)

# Header names the classifier and the matcher read (lower-case). The prefixes add vendor
# auto-reply markers, list headers and our own stamps without listing every variant.
_KEPT_HEADERS = frozenset({
    "auto-submitted", "x-autoreply", "x-autorespond", "x-autoresponder", "precedence",
    "x-precedence", "x-auto-response-suppress", "x-failed-recipients", "x-mailer",
    "user-agent", "x-spam-flag", "x-spam-status", "x-loop", "delivered-to", "reply-to",
    "sender", "x-ms-exchange-generated-message-source", "x-ms-exchange-inbox-rules-loop",
    "feedback-id", "x-boxbe-status", "x-original-to", "envelope-to", "x-envelope-to",
})
_KEPT_PREFIXES = ("list-", "x-auto", "x-nurture-", "x-vacation", "x-mailautoreply")
_MAX_HEADER = 4000  # a longer value is noise, not evidence
_MSGID = re.compile(r"<[^<>\s]+>")


def parse_inbound(raw: bytes) -> InboundMail:
    """Parse one raw RFC 5322 message; never raises, notes what it could not read."""
    defects: list[str] = []
    try:
        msg = email.message_from_bytes(raw or b"")
        return _build(msg, defects)
    except Exception as exc:  # noqa: BLE001 - last line of defence, see module docstring
        defects.append(f"unparseable message: {exc!r}")
        return InboundMail(text=decode_bytes(raw or b"", None), defects=tuple(defects))


def _build(msg: Message, defects: list[str]) -> InboundMail:
    from_name, from_addr = _first_address(msg, "from")
    text = best_text(msg)
    kept = _kept_headers(msg) | feedback_fields(msg)
    returned = returned_headers(msg, text, defects)
    return InboundMail(
        message_id=_first_id(header_text(msg, "message-id")),
        in_reply_to=_first_id(header_text(msg, "in-reply-to")),
        references=tuple(_MSGID.findall(header_text(msg, "references"))),
        from_addr=from_addr,
        from_name=from_name,
        to=_addresses(msg, "to", "cc"),
        subject=" ".join(header_text(msg, "subject").split()),
        date=_date(header_text(msg, "date")),
        return_path=_return_path(msg),
        headers=MappingProxyType(kept),
        content_type=msg.get_content_type(),
        report_type=str(msg.get_param("report-type", "") or "").lower(),
        part_types=tuple(p.get_content_type() for p in msg.walk()),
        text=text,
        delivery_status=delivery_status(msg, defects),
        returned_message_id=_first_id(returned.get("message-id", "")),
        returned_headers=MappingProxyType(returned),
        library_bounce=bounce_library_verdict(msg, defects),
        defects=tuple(defects) + tuple(_defect_names(msg)),
    )


# --- headers ---------------------------------------------------------------------------

def _first_id(value: str) -> str | None:
    found = _MSGID.search(value)
    if found:
        return found.group(0)
    return value.strip() or None  # a Message-ID without <> is still an identifier


def _pairs(msg: Message, *names: str) -> list[tuple[str, str]]:
    raw = [str(v) for name in names for v in (msg.get_all(name) or [])]
    try:
        return getaddresses(raw)
    except Exception:  # noqa: BLE001 - address parser bugs on hostile input
        return []


def _first_address(msg: Message, name: str) -> tuple[str, str]:
    for display, addr in _pairs(msg, name):
        if addr or display:
            return decode_header_value(display).strip(), decode_header_value(addr).lower()
    return "", ""


def _addresses(msg: Message, *names: str) -> tuple[str, ...]:
    found = (decode_header_value(addr).lower() for _, addr in _pairs(msg, *names))
    return tuple(dict.fromkeys(a for a in found if a))


def _date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return assume_utc(parsed)


def _return_path(msg: Message) -> str | None:
    value = msg.get("return-path")
    if value is None:
        return None
    inner = str(value).strip()
    if inner.startswith("<") and ">" in inner:
        inner = inner[1 : inner.index(">")]
    return decode_header_value(inner).strip().lower()


def _kept_headers(msg: Message) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in msg.items():
        key = name.lower()
        if key in kept or not (key in _KEPT_HEADERS or key.startswith(_KEPT_PREFIXES)):
            continue
        kept[key] = " ".join(decode_header_value(value).split())[:_MAX_HEADER]
    return kept


def _defect_names(msg: Message) -> Iterator[str]:
    for part in msg.walk():
        for defect in getattr(part, "defects", ()):
            yield type(defect).__name__


# --- body ------------------------------------------------------------------------------

def _leaves(part: Message) -> Iterator[Message]:
    """Inline leaf parts, not descending into returned messages or attachments."""
    ctype = part.get_content_type()
    if part.is_multipart():
        if ctype.startswith("message/"):
            return  # a returned or forwarded message is not this message's text
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _leaves(sub)
    elif part.get_content_disposition() != "attachment":
        yield part


def html_to_text(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # keep paragraphs on one line: quote detection reads lines
    converter.ignore_images = True
    converter.ignore_emphasis = False  # keep **bold** as Markdown: reps read it as text
    converter.ignore_links = True
    converter.unicode_snob = True
    try:
        return converter.handle(html)
    except Exception:  # noqa: BLE001 - html2text on broken markup; strip tags instead
        return re.sub(r"<[^>]+>", " ", html)


def best_text(msg: Message) -> str:
    """The text a reader sees: inline text/plain parts, else the HTML part converted."""
    plain: list[str] = []
    html: list[str] = []
    for leaf in _leaves(msg):
        ctype = leaf.get_content_type()
        if ctype == "text/plain":
            plain.append(part_text(leaf))
        elif ctype == "text/html":
            html.append(part_text(leaf))
    text = "\n".join(t for t in plain if t.strip())
    if not text and html:
        text = "\n".join(html_to_text(h) for h in html)
    if not text and not msg.is_multipart() and msg.get_content_maintype() == "multipart":
        text = part_text(msg)  # truncated MIME: the boundary never came, keep the raw body
    return text.replace("\r\n", "\n").replace("\r", "\n")
