"""Builds the message of a touch: multipart text + HTML, our Message-ID, threading and
List-Unsubscribe headers, and no header value that could inject another header.

Every header value is checked for line breaks and control characters, as given and, when it
holds encoded words, as decoded (`=?UTF-8?Q?=0A?=` decodes to a newline: CVE-2024-6923).
Values are then written verbatim or RFC 2047-encoded by us, never re-parsed: the email
package's structured-header parsing cost three times the rest of a send.
"""

from __future__ import annotations

import random
import re
import sys
from email import charset as charsets
from email import policy
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.utils import format_datetime, formataddr

from engine.domain.correlation import sendable_address
from engine.domain.touch import Outbound
from engine.errors import HeaderInjection

# CRLF line endings; fold only past RFC 5322's hard limit so List-Unsubscribe stays on one
# line (folding it broke DKIM at downstream signers).
POLICY = policy.compat32.clone(linesep="\r\n", max_line_length=998)
# C0 controls except TAB, DEL, NEL and the Unicode line/paragraph separators.
_BAD = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_UTF8_QP = charsets.Charset("utf-8")
_UTF8_QP.body_encoding = charsets.QP  # readable in raw form, unlike base64
_LINE_END = re.compile("\r\n|\r|\n")
_FIELD_NAME = re.compile("[!-9;-~]+")  # RFC 5322 2.2: printable ASCII except the colon
_SHORT = 900  # name + value below this: one line, written as is (no folding to do)


def message_bytes(out: Outbound) -> bytes:
    """The exact bytes of the message handed to SMTP (CRLF line endings).

    Written here rather than by `email.generator` (a third of a send's CPU): the same bytes
    as `MIMEMultipart`/`MIMEText` under POLICY would write (tests/unit/test_compose.py
    compares them), headers folded by POLICY itself when not short plain ASCII."""
    head = _headers(out)
    if not out.html:
        return _part(out.text, "plain", head)
    parts = [_part(out.text, "plain"), _part(out.html, "html")]
    boundary = _boundary(parts)
    return b"".join([
        _header_lines([("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
                       ("MIME-Version", "1.0"), *head]),
        b"\r\n", *[b"--%s\r\n%s\r\n" % (boundary.encode(), p) for p in parts],
        b"--%s--\r\n" % boundary.encode(),
    ])


def _headers(out: Outbound) -> list[tuple[str, str | Header]]:
    """The message's own headers in order, or HeaderInjection naming the header that
    carries a control character."""
    head: dict[str, tuple[str, str | Header]] = {}

    def put(name: str, value: str | Header) -> None:
        head.pop(name.lower(), None)  # a later value replaces an earlier one, at the end
        head[name.lower()] = (name, value)

    put("From", _address(out.from_name, out.from_addr, "From"))
    put("To", _address(out.to_name, out.to_addr, "To"))
    if out.reply_to:
        put("Reply-To", _address("", out.reply_to, "Reply-To"))
    put("Subject", _text_header("Subject", out.subject))
    put("Date", format_datetime(out.date))
    put("Message-ID", _checked("Message-ID", out.message_id))
    if out.in_reply_to:
        put("In-Reply-To", _checked("In-Reply-To", out.in_reply_to))
        put("References", _checked("References", out.references or out.in_reply_to))
    unsubscribe = list_unsubscribe(out.unsubscribe_url, out.unsubscribe_mailto)
    if unsubscribe:
        put("List-Unsubscribe", _checked("List-Unsubscribe", unsubscribe))
        if out.unsubscribe_url.startswith("https://"):
            # RFC 8058 3.1: one-click only with an https URL to POST to (the daemon warns
            # base_url_not_https at start-up when it is not).
            put("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    for name, value in out.headers.items():
        put(_field_name(name), _text_header(name, value))
    return list(head.values())


def _header_lines(head: list[tuple[str, str | Header]]) -> bytes:
    return b"".join(
        f"{name}: {value}\r\n".encode() if isinstance(value, str) and value.isascii()
        and len(name) + len(value) < _SHORT else POLICY.fold_binary(name, value)
        for name, value in head)


def _part(text: str, subtype: str, head: list[tuple[str, str | Header]] = ()) -> bytes:
    """A text part as MIMEText writes it (7bit when plain ASCII in short lines, else UTF-8
    quoted-printable), with `head` after its own headers when it is the whole message."""
    body = text if text.endswith("\n") else text + "\n"
    # Measured on the line ends the output keeps (str.splitlines also splits on \f, \v...).
    if body.isascii() and max(map(len, _LINE_END.split(body))) <= 900:
        charset, cte = "us-ascii", "7bit"
    else:
        charset, cte = "utf-8", "quoted-printable"
        body = _UTF8_QP.body_encode(body)
    return b"".join([
        _header_lines([("Content-Type", f'text/{subtype}; charset="{charset}"'),
                       ("MIME-Version", "1.0"), ("Content-Transfer-Encoding", cte), *head]),
        b"\r\n", _LINE_END.sub("\r\n", body).encode("ascii"),
    ])


def _boundary(parts: list[bytes]) -> str:
    """email.generator's boundary form, one that no part contains."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        if not any(boundary.encode() in p for p in parts):
            return boundary


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


def _field_name(name: str) -> str:
    """A header name as RFC 5322 allows it, or HeaderInjection: a name carrying a colon, a
    space or a line break would write other headers."""
    if not _FIELD_NAME.fullmatch(name):
        raise HeaderInjection(f"header {name[:60]!r}", None,
                              f"{name[:60]!r} is not a header name (printable ASCII, no colon)")
    return name


def _text_header(name: str, value: str) -> str | Header:
    value = _checked(name, value.strip())
    return value if value.isascii() else Header(value, "utf-8", header_name=name)


def _address(name: str, addr: str, header: str) -> str:
    _checked(header, name)
    check_header(header, addr)
    addr = addr.strip()
    if not sendable_address(addr):
        raise HeaderInjection(f"header {header}", None, f"'{addr}' is not an email address")
    try:
        return formataddr((name.strip(), addr), charset="utf-8")
    except (UnicodeError, ValueError) as exc:
        raise HeaderInjection(f"header {header}", None,
                              f"'{addr}' is not a usable address: {exc}") from exc
