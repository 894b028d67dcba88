"""mail/parse.py: raw bytes -> InboundMail, on small hand-written messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.mail.parse import parse_inbound


def msg(headers: str, body: str = "Hello\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")


def test_threading_headers_are_read() -> None:
    """Message-ID, In-Reply-To and every References id are kept, in order."""
    mail = parse_inbound(msg(
        "Message-ID: <reply-1@lead.example>\n"
        "In-Reply-To: <touch-2@nurture.example>\n"
        "References: <touch-1@nurture.example>\n <touch-2@nurture.example>\n"
    ))
    assert mail.message_id == "<reply-1@lead.example>"
    assert mail.in_reply_to == "<touch-2@nurture.example>"
    assert mail.references == ("<touch-1@nurture.example>", "<touch-2@nurture.example>")


def test_encoded_word_subject_and_sender_name_are_decoded() -> None:
    """RFC 2047 encoded words in Subject and From are decoded; the address is lower-cased."""
    mail = parse_inbound(msg(
        "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen.Mueller@Example.DE>\n"
        "Subject: =?iso-8859-1?q?Abwesenheitsnotiz=3A_R=FCckfrage?=\n"
    ))
    assert mail.subject == "Abwesenheitsnotiz: Rückfrage"
    assert mail.from_name == "Jürgen Müller"
    assert mail.from_addr == "juergen.mueller@example.de"


def test_null_return_path_differs_from_missing() -> None:
    """Return-Path <> (a bounce's null sender) is "", no Return-Path at all is None."""
    assert parse_inbound(msg("Return-Path: <>\nFrom: a@b.example")).return_path == ""
    assert parse_inbound(msg("From: a@b.example")).return_path is None
    assert parse_inbound(msg("Return-Path: <X@B.example>")).return_path == "x@b.example"


def test_date_is_timezone_aware() -> None:
    """A Date header becomes an aware datetime; a broken one becomes None."""
    good = parse_inbound(msg("Date: Mon, 02 Mar 2026 09:15:00 +0100"))
    assert good.date == datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    assert parse_inbound(msg("Date: the day after tomorrow")).date is None


def test_headers_that_matter_are_kept_lower_cased() -> None:
    """Auto-reply and list headers are available by lower-case name."""
    mail = parse_inbound(msg(
        "Auto-Submitted: auto-replied\nX-Autoreply: yes\nPrecedence: bulk\n"
        "List-Id: <news.example.org>\nX-Nurture-Touch: 42\nReceived: from x by y\n"
    ))
    assert mail.header("Auto-Submitted") == "auto-replied"
    assert mail.headers["x-autoreply"] == "yes"
    assert mail.headers["precedence"] == "bulk"
    assert mail.headers["list-id"] == "<news.example.org>"
    assert mail.headers["x-nurture-touch"] == "42"
    assert "received" not in mail.headers


def test_html_only_mail_is_converted_to_text() -> None:
    """Without a text/plain part the HTML part is converted, quotes become "> " lines."""
    mail = parse_inbound(msg(
        "Content-Type: text/html; charset=utf-8",
        "<p>Yes, <b>Tuesday</b> works.</p><blockquote>Can we meet?</blockquote>",
    ))
    assert "Yes, **Tuesday** works." in mail.text
    assert "> Can we meet?" in mail.text


def test_text_part_is_preferred_over_html() -> None:
    """multipart/alternative: the text/plain part is the body."""
    mail = parse_inbound(msg(
        'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"',
        "--b\nContent-Type: text/plain\n\nplain words\n--b\nContent-Type: text/html\n\n"
        "<p>html words</p>\n--b--\n",
    ))
    assert mail.text.strip() == "plain words"


DSN = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
Return-Path: <>
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.
--R
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; Lead@Example.com
Original-Recipient: rfc822;lead@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <lead@example.com>: Recipient address rejected

--R
Content-Type: message/rfc822

Message-ID: <touch-7@nurture.example>
X-Nurture-Touch: 7
To: lead@example.com
Subject: A case study

Hi there
--R--
"""


def test_delivery_status_fields_are_read_per_recipient() -> None:
    """RFC 3464 fields: recipient (Original preferred), action, status, diagnostic."""
    mail = parse_inbound(DSN.encode())
    assert mail.content_type == "multipart/report"
    assert mail.report_type == "delivery-status"
    (status,) = mail.delivery_status
    assert status.recipient == "lead@example.com"
    assert status.final_recipient == "lead@example.com"
    assert (status.action, status.status) == ("failed", "5.1.1")
    assert status.diagnostic.startswith("550 5.1.1")


def test_returned_message_ids_come_from_the_attached_original() -> None:
    """The bounced message's Message-ID and X-Nurture-* headers match the bounce to a touch."""
    mail = parse_inbound(DSN.encode())
    assert mail.returned_message_id == "<touch-7@nurture.example>"
    assert mail.returned_headers["x-nurture-touch"] == "7"
    assert "Hi there" not in mail.text  # the returned message is not the bounce's text


def test_returned_headers_from_text_rfc822_headers_part() -> None:
    """A text/rfc822-headers part (headers only) also yields the returned Message-ID."""
    raw = DSN.replace("Content-Type: message/rfc822", "Content-Type: text/rfc822-headers")
    assert parse_inbound(raw.encode()).returned_message_id == "<touch-7@nurture.example>"


def test_returned_ids_from_an_inline_quoted_original() -> None:
    """A qmail-style bounce quotes the original inline; its Message-ID is still found."""
    mail = parse_inbound(msg(
        "From: MAILER-DAEMON@mail.example.org\nSubject: failure notice",
        "Hi. This is the qmail-send program at mail.example.org.\n\n<lead@example.com>:\n"
        "Sorry, no mailbox here by that name.\n\n--- Below this line is a copy of the message.\n\n"
        "Message-ID: <touch-9@nurture.example>\nReferences: <touch-1@nurture.example>\n"
        "Subject: hello\n\nbody\n",
    ))
    assert mail.returned_message_id == "<touch-9@nurture.example>"
    assert mail.returned_headers["references"] == "<touch-1@nurture.example>"


def test_flufl_bounce_verdict_is_attached() -> None:
    """flufl.bounce's permanent failures are recorded for the classifier to weigh."""
    mail = parse_inbound(DSN.encode())
    assert mail.library_bounce is not None
    assert "lead@example.com" in mail.library_bounce.permanent


def test_feedback_type_is_read_from_an_arf_report() -> None:
    """An RFC 5965 abuse report exposes its Feedback-Type."""
    mail = parse_inbound(msg(
        'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; '
        'boundary="F"',
        "--F\nContent-Type: text/plain\n\nThis is an abuse report\n--F\n"
        "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nVersion: 1\n--F--\n",
    ))
    assert mail.header("feedback-type") == "abuse"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"just some words without any header\r\n",
        b"\xff\xfe\x00garbage\x00\xff",
        b"Subject: =?x-unknown-charset?q?caf=E9?=\r\n\r\nbody",
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\ncaf\xe9 cr\xe8me",
        b"Subject: \xe4\xf6\xfc raw latin-1\r\nFrom: \xff <@>\r\n\r\nx",
        b'Content-Type: multipart/mixed; boundary="never"\r\n\r\n--never\r\n'
        b"Content-Type: text/plain\r\n\r\ntruncated here",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=Z\r\n\r\n"
        b"--Z\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient",
        b"From: \"unterminated <a@b\r\nDate: 99 Foo 99999 99:99\r\nReferences: <<<\r\n\r\n",
    ],
)
def test_malformed_input_never_raises(raw: bytes) -> None:
    """No headers, bad charsets, truncated MIME, broken encodings: an InboundMail, no error."""
    mail = parse_inbound(raw)
    assert isinstance(mail.text, str)
    assert isinstance(mail.subject, str)


def test_bad_charset_text_is_still_readable() -> None:
    """An unknown charset label falls back to UTF-8/Latin-1 rather than losing the text."""
    mail = parse_inbound(b"Content-Type: text/plain; charset=no-such-charset\r\n\r\ncaf\xe9")
    assert mail.text == "café"


def test_truncated_mime_keeps_the_body() -> None:
    """A multipart whose boundary never appears still yields its raw text."""
    mail = parse_inbound(
        b'Content-Type: multipart/mixed; boundary="never"\r\n\r\nPlease call me tomorrow.\r\n'
    )
    assert "Please call me tomorrow." in mail.text
    assert mail.defects
