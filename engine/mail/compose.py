"""Builds the EmailMessage of a touch: multipart text + HTML, our Message-ID, threading and
List-Unsubscribe headers, and no header value that could inject another header.

Every header value is checked twice for line breaks and control characters: as given, and
as the email package decodes it (an encoded word such as `=?UTF-8?Q?=0A?=` decodes to a
newline: CVE-2024-6923).
"""

from __future__ import annotations

import re
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from engine.domain.touch import Outbound
from engine.errors import HeaderInjection

# SMTP line endings; fold only past RFC 5322's hard limit so List-Unsubscribe stays on one
# line (folding it broke DKIM at downstream signers); strict about defects.
POLICY = policy.SMTP.clone(max_line_length=998, raise_on_defect=True)
# C0 controls except TAB, DEL, NEL and the Unicode line/paragraph separators.
_BAD = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def message_bytes(out: Outbound) -> bytes:
    """The exact bytes of the message handed to SMTP (CRLF line endings)."""
    return to_bytes(compose(out))


def compose(out: Outbound) -> EmailMessage:
    """The message, or HeaderInjection naming the header that carries a control character."""
    msg = EmailMessage(policy=POLICY)
    _set(msg, "From", _address(out.from_name, out.from_addr, "From"))
    _set(msg, "To", _address(out.to_name, out.to_addr, "To"))
    if out.reply_to:
        _set(msg, "Reply-To", _address("", out.reply_to, "Reply-To"))
    _set(msg, "Subject", out.subject)
    _set(msg, "Date", format_datetime(out.date))
    _set(msg, "Message-ID", out.message_id)
    if out.in_reply_to:
        _set(msg, "In-Reply-To", out.in_reply_to)
        _set(msg, "References", out.references or out.in_reply_to)
    unsubscribe = list_unsubscribe(out.unsubscribe_url, out.unsubscribe_mailto)
    if unsubscribe:
        _set(msg, "List-Unsubscribe", unsubscribe)
        if out.unsubscribe_url:
            # RFC 8058: one-click only with an https URL to POST to.
            _set(msg, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    for name, value in out.headers.items():
        _set(msg, name, value)
    msg.set_content(out.text or " ")
    if out.html:
        msg.add_alternative(out.html, subtype="html")
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    """The exact bytes handed to SMTP (CRLF line endings)."""
    return msg.as_bytes(policy=POLICY)


def list_unsubscribe(url: str, mailto: str) -> str:
    """`<https://.../u/TOKEN>, <mailto:...?subject=unsubscribe>` (RFC 2369 / 8058)."""
    parts = []
    if url:
        parts.append(f"<{url}>")
    if mailto:
        parts.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return ", ".join(parts)


def check_header(name: str, value: str) -> None:
    """HeaderInjection when a header value carries a line break or control character."""
    bad = _BAD.search(value)
    if bad:
        raise HeaderInjection(
            f"header {name}", None,
            f"the {name} header would contain the control character {bad.group()!r} "
            f"(in {value[:60]!r}); line breaks in a header value would let lead data or a "
            "template inject other headers. Remove it from the template or the lead's data.",
        )


def _set(msg: EmailMessage, name: str, value: str | Address) -> None:
    if isinstance(value, str):
        check_header(name, value)
    try:
        msg[name] = value
    except (ValueError, TypeError) as exc:
        raise HeaderInjection(f"header {name}", None, f"invalid {name} header: {exc}") from exc
    check_header(name, str(msg[name]))  # as decoded: encoded words included


def _address(name: str, addr: str, header: str) -> Address:
    check_header(header, name)
    check_header(header, addr)
    local, at, domain = addr.strip().rpartition("@")
    if not at or not local or not domain:
        raise HeaderInjection(f"header {header}", None, f"'{addr}' is not an email address")
    try:
        return Address(display_name=name.strip(), username=local, domain=domain)
    except (ValueError, TypeError) as exc:
        raise HeaderInjection(f"header {header}", None,
                              f"'{addr}' is not a usable address: {exc}") from exc
