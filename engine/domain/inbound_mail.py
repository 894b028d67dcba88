"""Inbound mail as the domain reads it: headers that matter, best text, bounce data.

Pure data: mail/parse.py builds an `InboundMail` from raw bytes (never raising); the
classifier (inbound.py) and its rule modules only read the fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


@dataclass(frozen=True)
class DeliveryStatus:
    """One per-recipient block of an RFC 3464 message/delivery-status part."""

    final_recipient: str = ""
    original_recipient: str = ""
    action: str = ""  # lower-case: failed, delayed, delivered, relayed, expanded
    status: str = ""  # e.g. "5.1.1"
    diagnostic: str = ""  # Diagnostic-Code without its type, e.g. "550 5.1.1 user unknown"

    @property
    def recipient(self) -> str:
        """The address we sent to: Original-Recipient when given, else Final-Recipient."""
        return self.original_recipient or self.final_recipient


@dataclass(frozen=True)
class LibraryBounce:
    """What flufl.bounce found: temporary and permanent failures (lower-case addresses)."""

    temporary: tuple[str, ...] = ()
    permanent: tuple[str, ...] = ()


def _no_headers() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class InboundMail:
    """A parsed inbound message: decoded headers, best text body and bounce data.

    Every field has a harmless default so that malformed mail still yields an object.
    """

    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    from_addr: str = ""  # lower-case; "" when missing or unreadable
    from_name: str = ""
    to: tuple[str, ...] = ()  # lower-case addresses from To and Cc
    subject: str = ""
    date: datetime | None = None  # timezone-aware
    return_path: str | None = None  # None: no header; "": the null sender <>
    # lower-cased names of the headers that matter -> decoded values
    headers: Mapping[str, str] = field(default_factory=_no_headers)
    content_type: str = ""  # top-level, lower-case, e.g. "multipart/report"
    report_type: str = ""  # its report-type parameter, e.g. "delivery-status"
    part_types: tuple[str, ...] = ()  # every content type in the MIME tree
    text: str = ""  # best text body; HTML converted when there is no text part
    delivery_status: tuple[DeliveryStatus, ...] = ()
    returned_message_id: str | None = None  # the bounced message's own Message-ID
    # the returned message's threading, To, Subject and X-Nurture-* headers
    returned_headers: Mapping[str, str] = field(default_factory=_no_headers)
    library_bounce: LibraryBounce | None = None
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        """A header that matters, by case-insensitive name; "" when absent."""
        return self.headers.get(name.lower(), "")


_REPLY_PREFIX = re.compile(
    r"^\s*(re|aw|sv|vs|antw|antwort|rif|r|réf|ref|res|odp|vá|ynt|回复|答复|返信)\s*(\[\d+\])?\s*:",
    re.IGNORECASE,
)


def is_reply_subject(subject: str) -> bool:
    """Does the subject carry a reply prefix (Re:, AW:, SV:, Antw:, RES: ...)?"""
    return bool(_REPLY_PREFIX.match(subject))


def storable(text: str) -> str:
    """Without NUL (PostgreSQL refuses it in text) and lone surrogates (UTF-7's `+2AA-`
    decodes to one; no driver can encode it): such a reply was retried forever, or lost."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
