"""Composing a touch's message: parts, headers, threading, unsubscribe, injection guard; and the
identifiers stamped on it (Message-ID, unsubscribe token)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from engine.domain import unsubscribe_token
from engine.domain.correlation import (
    mint_message_id,
    references_after,
    reply_subject,
)
from engine.domain.touch import Outbound
from engine.domain.unsubscribe_token import _sign, make_token, read_token
from engine.errors import ConfigError, HeaderInjection, InvalidToken, OutdatedToken
from engine.mail import compose
from engine.mail.compose import message_bytes

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def outbound(**over: object) -> Outbound:
    base: dict[str, object] = dict(
        from_addr="sales@acme.test", from_name="Sam Rivera", to_addr="ada@example.com",
        to_name="Ada Lovelace", subject="Your demo", text="Hi Ada,\n\nHello.",
        html="<p>Hi Ada,</p><p>Hello.</p>", message_id="<nurture.1.0.0.ab@acme.test>",
        date=AT, unsubscribe_url="https://n.test/u/TOKEN", unsubscribe_mailto="u@acme.test",
        headers={"X-Nurture-Touch": "7"})
    base.update(over)
    return Outbound(**base)  # type: ignore[arg-type]


def parse(raw: bytes):  # noqa: ANN201 - an EmailMessage
    return message_from_bytes(raw, policy=policy.default)


def test_text_and_html_are_alternatives() -> None:
    """multipart/alternative with a text/plain then a text/html part."""
    msg = parse(message_bytes(outbound()))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "Hello." in msg.get_body(("plain",)).get_content()


def test_the_envelope_headers_name_sender_recipient_and_our_message_id() -> None:
    """From and To carry display names; Date and our Message-ID are set."""
    msg = parse(message_bytes(outbound()))
    assert msg["From"] == "Sam Rivera <sales@acme.test>"
    assert msg["To"] == "Ada Lovelace <ada@example.com>"
    assert msg["Message-ID"] == "<nurture.1.0.0.ab@acme.test>"
    assert msg["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    assert msg["X-Nurture-Touch"] == "7"


def stdlib_bytes(out: Outbound, boundary: str) -> bytes:
    """The message as the email package writes it (what message_bytes used until it wrote
    the bytes itself): the oracle for its byte-for-byte equivalence."""
    def text_part(text: str, subtype: str) -> MIMEText:
        body = text if text.endswith("\n") else text + "\n"
        if body.isascii() and max(map(len, body.splitlines() or [""])) <= 900:
            return MIMEText(body, subtype, "us-ascii")
        return MIMEText(body, subtype, compose._UTF8_QP)  # type: ignore[arg-type]

    msg: Message = MIMEMultipart("alternative") if out.html else text_part(out.text, "plain")
    for name, value in compose._headers(out):
        msg[name] = value
    if out.html:
        msg.attach(text_part(out.text, "plain"))
        msg.attach(text_part(out.html, "html"))
        msg.set_boundary(boundary)
    return msg.as_bytes(policy=compose.POLICY)


@pytest.mark.parametrize("over", [
    {},
    {"html": ""},
    {"html": "", "text": "Zoë says hi\r\nbare CR\rend", "subject": "Café — démo"},
    {"to_name": "Zoë Ångström", "from_name": "Sälès, Team", "subject": "Café — demo " * 30},
    {"subject": "plain words " * 120, "reply_to": "reply@acme.test"},
    {"text": "x" * 1200 + "\n" + "=" * 20 + " ünï\tcode 🙂\n\n.\nFrom me\n",
     "html": "<p>" + "y" * 950},
    {"text": "", "html": "<p>===============1234567890123456789==</p>\n\n\n"},
    {"unsubscribe_url": "https://n.test/u/" + "T" * 990, "in_reply_to": "<b@acme.test>",
     "references": "<a@acme.test> <b@acme.test>"},
    {"headers": {"X-Nurture-Lead": "9", "subject": "replaced", "X-Long": "v " * 600}},
    {"unsubscribe_url": "", "unsubscribe_mailto": "", "text": "trailing space \nline  \n"},
])
def test_the_bytes_are_those_the_email_package_writes(over: dict[str, object]) -> None:
    """message_bytes writes the message itself (cheaper); byte for byte what MIMEMultipart
    and MIMEText under the same policy write, for plain, non-ASCII, long and odd input."""
    out = outbound(**over)
    raw = message_bytes(out)
    found = re.search(rb'boundary="([^"]+)"', raw)
    assert bool(found) == bool(out.html)
    assert raw == stdlib_bytes(out, found.group(1).decode() if found else "")


def test_the_boundary_is_never_in_a_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body holding a would-be boundary gets another one."""
    tokens = iter([1, 2])
    monkeypatch.setattr(compose.random, "randrange", lambda _n: next(tokens))
    taken = "=" * 15 + f"{1:019d}" + "=="
    raw = message_bytes(outbound(html=f"<p>{taken}</p>"))
    assert f'boundary="{"=" * 15}{2:019d}=="'.encode() in raw
    assert f'boundary="{taken}"'.encode() not in raw
    assert parse(raw).get_body(("html",)).get_content().strip() == f"<p>{taken}</p>"


def test_list_unsubscribe_is_one_line_with_one_click_post() -> None:
    """RFC 8058: https link and mailto on one unfolded line, plus List-Unsubscribe-Post."""
    raw = message_bytes(outbound(unsubscribe_url="https://n.test/u/" + "T" * 120))
    line = next(x for x in raw.split(b"\r\n") if x.startswith(b"List-Unsubscribe:"))
    assert line == (b"List-Unsubscribe: <https://n.test/u/" + b"T" * 120
                    + b">, <mailto:u@acme.test?subject=unsubscribe>")
    assert parse(raw)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_no_one_click_post_without_https() -> None:
    """RFC 8058 3.1: an http link (a demo on loopback) gets List-Unsubscribe, never -Post."""
    msg = parse(message_bytes(outbound(unsubscribe_url="http://127.0.0.1:8025/u/TOKEN")))
    assert msg["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/u/TOKEN>")
    assert msg["List-Unsubscribe-Post"] is None


def test_lines_end_in_crlf() -> None:
    """SMTP wants CRLF; no bare LF anywhere."""
    raw = message_bytes(outbound())
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_threading_headers_for_a_follow_up() -> None:
    """In-Reply-To names the previous message; References the whole chain."""
    refs = references_after("<a@acme.test>", "<b@acme.test>")
    msg = parse(message_bytes(outbound(in_reply_to="<b@acme.test>", references=refs)))
    assert msg["In-Reply-To"] == "<b@acme.test>"
    assert msg["References"] == "<a@acme.test> <b@acme.test>"


def test_reply_subject_has_one_re() -> None:
    """`Re: ` once, whatever the previous subject already had."""
    assert reply_subject("Your demo") == "Re: Your demo"
    assert reply_subject("RE: re:  Your demo") == "Re: Your demo"


def test_non_ascii_names_and_subjects_are_encoded() -> None:
    """A name or subject outside ASCII survives the round trip."""
    msg = parse(message_bytes(outbound(to_name="Zoë Ångström", subject="Café — demo")))
    assert msg["To"] == "Zoë Ångström <ada@example.com>"
    assert msg["Subject"] == "Café — demo"


@pytest.mark.parametrize("subject", [
    "Hello\r\nBcc: eve@evil.test", "Hello\nBcc: eve@evil.test", "Hello\x00", "a\u2028b",
    "a\u2029b", "=?UTF-8?Q?Hello=0ABcc:_eve@evil.test?=",
])
def test_control_characters_in_the_subject_are_refused(subject: str) -> None:
    """Line breaks (also encoded or Unicode ones) never reach a header."""
    with pytest.raises(HeaderInjection, match="Subject"):
        message_bytes(outbound(subject=subject))


def test_a_line_break_in_a_lead_name_is_refused() -> None:
    """Lead data is untrusted: a name with CRLF cannot add a Bcc."""
    with pytest.raises(HeaderInjection, match="To"):
        message_bytes(outbound(to_name="Eve\r\nBcc: eve@evil.test"))


@pytest.mark.parametrize(
    "name", ["X-Evil\r\nBcc: v@z.test\r\nX-A", "X Space", "X:Colon", "", "X-Zoë"])
def test_a_header_name_that_is_not_one_is_refused(name: str) -> None:
    """Header names are checked too: a name with a line break, space or colon cannot add a Bcc."""
    with pytest.raises(HeaderInjection):
        message_bytes(outbound(headers={name: "1"}))


def test_a_long_line_split_only_by_a_form_feed_is_not_written_as_7bit() -> None:
    """Line length is measured on CR/LF, the only line ends the output keeps."""
    raw = message_bytes(outbound(html="", text="a" * 600 + "\f" + "a" * 600))
    assert max(map(len, raw.split(b"\r\n"))) <= 998
    assert b"quoted-printable" in raw


def test_a_broken_address_is_refused() -> None:
    """An address without a domain is an error naming the header."""
    with pytest.raises(HeaderInjection, match="To"):
        message_bytes(outbound(to_addr="not-an-address"))


def test_message_ids_are_unique_and_name_their_touch() -> None:
    """Minted IDs differ each time and carry the enrollment (base 36), step and occurrence."""
    a = mint_message_id("acme.test", 12345, 2, 1)
    assert a != mint_message_id("acme.test", 12345, 2, 1)
    assert a.startswith("<nurture.9ix.2.1.") and a.endswith("@acme.test>")


def test_unsubscribe_tokens_round_trip_and_refuse_tampering() -> None:
    """A token names its lead and sequence; a changed byte or key is refused."""
    token = make_token("k1", 42, "demo-request", "ada@example.com")
    claim = read_token("k1", token)
    assert (claim.lead_id, claim.sequence) == (42, "demo-request")
    with pytest.raises(InvalidToken):
        read_token("k2", token)
    with pytest.raises(InvalidToken):
        read_token("k1", make_token("k1", 43, "demo-request", "ada@example.com").split(".")[0]
                   + "." + token.split(".")[1])
    with pytest.raises(InvalidToken):
        read_token("k1", "garbage")


def test_an_unsubscribe_token_names_its_recipient_without_showing_the_address() -> None:
    """The token holds a keyed hash of the address: it matches that address (any case) and
    no other, and the address cannot be read from the link."""
    token = make_token("k1", 42, "demo-request", "ada@example.com")
    claim = read_token("k1", token)
    assert claim.is_for("k1", "Ada@Example.com")
    assert not claim.is_for("k1", "grace@example.com")
    assert b"ada" not in base64.urlsafe_b64decode(token.split(".")[0] + "==")


def test_a_token_of_the_first_format_is_outdated() -> None:
    """`lead_id:sequence` tokens (signed, without the recipient) get OutdatedToken, whose
    message says how to unsubscribe instead."""
    payload = b"42:demo-request"
    old = f"{unsubscribe_token._b64(payload)}.{unsubscribe_token._b64(_sign('k1', payload))}"
    with pytest.raises(OutdatedToken, match='reply to that email with the word "unsubscribe"'):
        read_token("k1", old)


def test_no_secret_key_is_a_config_error() -> None:
    """Signing without NURTURE_SECRET_KEY says how to set it."""
    with pytest.raises(ConfigError, match="NURTURE_SECRET_KEY"):
        make_token("", 1, "s", "ada@example.com")


@pytest.mark.parametrize("address", ["sales@localhost", "a@[127.0.0.1]", '"a b"@x.com'])
def test_the_config_refuses_a_mailbox_address_compose_could_not_send_from(address: str) -> None:
    """Config and compose share one rule: an address the config takes never fails every send."""
    from pydantic import ValidationError

    from engine.settings import MailboxConfig, SmtpConfig

    with pytest.raises(HeaderInjection):
        message_bytes(outbound(from_addr=address))
    with pytest.raises(ValidationError, match="not an email address"):
        MailboxConfig(address=address, smtp=SmtpConfig(host="127.0.0.1"))
