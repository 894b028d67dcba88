"""Builds the message of a touch: multipart text + HTML, our Message-ID, threading and
List-Unsubscribe headers, and no header value that could inject another header.

Every header value is checked for line breaks and control characters, as given and, when it
holds encoded words, as decoded (`=?UTF-8?Q?=0A?=` decodes to a newline: CVE-2024-6923).
Values are then written verbatim or RFC 2047-encoded by us, never re-parsed: the email
package's structured-header parsing cost three times the rest of a send.
"""

from __future__ import annotations

import re
from email import charset as charsets
from email import policy
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr

from engine.domain.touch import Outbound
from engine.errors import HeaderInjection

# CRLF line endings; fold only past RFC 5322's hard limit so List-Unsubscribe stays on one
# line (folding it broke DKIM at downstream signers).
POLICY = policy.compat32.clone(linesep="\r\n", max_line_length=998)
# C0 controls except TAB, DEL, NEL and the Unicode line/paragraph separators.
_BAD = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+\.[^\s@<>()\[\],;:\"\\]+$")
_UTF8_QP = charsets.Charset("utf-8")
_UTF8_QP.body_encoding = charsets.QP  # readable in raw form, unlike base64


def message_bytes(out: Outbound) -> bytes:
    """The exact bytes of the message handed to SMTP (CRLF line endings)."""
    return compose(out).as_bytes(policy=POLICY)


def compose(out: Outbound) -> Message:
    """The message, or HeaderInjection naming the header that carries a control character."""
    msg: Message = MIMEMultipart("alternative") if out.html else _text_part(out.text, "plain")
    _set(msg, "From", _address(out.from_name, out.from_addr, "From"))
    _set(msg, "To", _address(out.to_name, out.to_addr, "To"))
    if out.reply_to:
        _set(msg, "Reply-To", _address("", out.reply_to, "Reply-To"))
    _set(msg, "Subject", _text_header("Subject", out.subject))
    _set(msg, "Date", format_datetime(out.date))
    _set(msg, "Message-ID", _checked("Message-ID", out.message_id))
    if out.in_reply_to:
        _set(msg, "In-Reply-To", _checked("In-Reply-To", out.in_reply_to))
        _set(msg, "References", _checked("References", out.references or out.in_reply_to))
    unsubscribe = list_unsubscribe(out.unsubscribe_url, out.unsubscribe_mailto)
    if unsubscribe:
        _set(msg, "List-Unsubscribe", _checked("List-Unsubscribe", unsubscribe))
        if out.unsubscribe_url.startswith("https://"):
            # RFC 8058 3.1: one-click only with an https URL to POST to (the daemon warns
            # base_url_not_https at start-up when it is not).
            _set(msg, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    for name, value in out.headers.items():
        _set(msg, name, _text_header(name, value))
    if out.html:
        msg.attach(_text_part(out.text, "plain"))
        msg.attach(_text_part(out.html, "html"))
    return msg


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


def _checked(name: str, value: str) -> str:
    check_header(name, value)
    if "=?" in value:  # encoded words: check what a reader would decode them to
        try:
            check_header(name, str(make_header(decode_header(value))))
        except (HeaderParseError, LookupError, UnicodeError, ValueError):
            raise HeaderInjection(f"header {name}", None,
                                  f"the {name} header has a malformed encoded word") from None
    return value


def _text_header(name: str, value: str) -> str | Header:
    value = _checked(name, value.strip())
    return value if value.isascii() else Header(value, "utf-8", header_name=name)


def _set(msg: Message, name: str, value: str | Header) -> None:
    if name in msg:
        del msg[name]
    msg[name] = value


def _address(name: str, addr: str, header: str) -> str:
    _checked(header, name)
    check_header(header, addr)
    addr = addr.strip()
    if not _ADDRESS.match(addr):
        raise HeaderInjection(f"header {header}", None, f"'{addr}' is not an email address")
    try:
        return formataddr((name.strip(), addr), charset="utf-8")
    except (UnicodeError, ValueError) as exc:
        raise HeaderInjection(f"header {header}", None,
                              f"'{addr}' is not a usable address: {exc}") from exc


def _text_part(text: str, subtype: str) -> MIMEText:
    body = text if text.endswith("\n") else text + "\n"
    if body.isascii() and max(map(len, body.splitlines() or [""])) <= 900:
        return MIMEText(body, subtype, "us-ascii")  # plain 7bit
    return MIMEText(body, subtype, _UTF8_QP)  # type: ignore[arg-type]
