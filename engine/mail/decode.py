"""Decoding that never fails: charsets, RFC 2047 encoded words, MIME part payloads.

Strangers' mail names charsets Python does not know, mislabels them, or carries raw 8-bit
bytes in headers; each helper here falls back (alias, UTF-8, Latin-1) instead of raising.
"""

from __future__ import annotations

import codecs
from email.header import Header, decode_header
from email.message import Message

from engine.domain.inbound_mail import storable

# Charset labels seen in the wild that Python's codec registry does not know.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949", "iso-8859-8-i": "iso-8859-8", "x-sjis": "shift_jis",
    "windows-874": "cp874", "unicode-1-1-utf-7": "utf-7",
    "us-ascii": "utf-8", "ascii": "utf-8",  # mislabelled 8-bit text is usually UTF-8
}
# Labels that say "we do not know": guess UTF-8, then Latin-1.
_UNKNOWN = frozenset({"unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default"})


def codec_for(charset: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None when unknown."""
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    if label in _UNKNOWN:
        return None
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes -> text in the declared charset, else UTF-8, else Latin-1 (which cannot fail);
    always text a database can store (see storable)."""
    codec = codec_for(charset)
    for candidate in (codec, "utf-8"):
        if candidate:
            try:
                return storable(data.decode(candidate))
            except (UnicodeDecodeError, LookupError, ValueError):
                continue
    if codec:
        return storable(data.decode(codec, errors="replace"))
    return storable(data.decode("latin-1"))


def _unescape(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes; read them as UTF-8/Latin-1."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


def decode_header_value(value: object) -> str:
    """A raw header value (encoded words, raw 8-bit, Header objects) -> plain text."""
    if value is None:
        return ""
    # compat32 hands raw 8-bit headers over as Header objects (charset unknown-8bit).
    raw: str | Header = value if isinstance(value, Header) else _unescape(str(value))
    try:
        chunks = decode_header(raw)
    except Exception:  # noqa: BLE001 - malformed encoded words: keep the raw text
        return str(raw)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    # decode_header drops the whitespace between an encoded word and plain text only when
    # both are encoded; joining with "" is RFC 2047 section 6.2's rule.
    return "".join(out)


def header_text(msg: Message, name: str) -> str:
    """The first `name` header, decoded; "" when absent or unreadable."""
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - compat32 can choke on broken folding
        return ""
    return decode_header_value(value) if value is not None else ""


def part_text(part: Message) -> str:
    """A leaf part's decoded text (transfer encoding and charset), "" when unreadable."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken base64 / quoted-printable
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return _unescape(raw) if isinstance(raw, str) else ""
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001 - malformed parameters
        charset = None
    return decode_bytes(payload, charset)
