"""mail/smtp.py against a real aiosmtpd sink: connection reuse, recycling, and how each kind of
failure (4xx, 5xx at RCPT, a dropped connection, slowness, quota) is classified."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import (
    MailboxQuotaExhausted,
    RecipientRejected,
    TransientSendError,
)
from engine.mail.smtp import SmtpPool, classify
from engine.settings import SmtpConfig
from tests.servers.smtp_sink import Faults, SmtpSink


def raw(mid: str, to: str = "ada@example.com") -> bytes:
    return (f"From: sales@acme.test\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: {mid}\r\n\r\n"
            "hello\r\n").encode()


def pool(port: int, **cfg: object) -> SmtpPool:
    settings: dict[str, object] = {"timeout": 2.0, **cfg}
    return SmtpPool("sales", SmtpConfig(host="127.0.0.1", port=port, tls="none",
                                        **settings), "")  # type: ignore[arg-type]


def send_all(p: SmtpPool, mids: list[str], to: str = "ada@example.com") -> list[object]:
    async def go() -> list[object]:
        try:
            return await asyncio.gather(*(p.send("sales@acme.test", to, raw(m)) for m in mids),
                                        return_exceptions=True)
        finally:
            await p.close()
    return asyncio.run(go())


def test_messages_arrive_over_reused_connections(sink: SmtpSink) -> None:
    """Ten messages through a pool of two: all delivered, at most two sessions opened."""
    results = send_all(pool(sink.port, connections=2), [f"<m{i}@acme.test>" for i in range(10)])
    assert all(getattr(r, "code", None) == 250 for r in results)
    assert sorted(m.message_id for m in sink.received) == sorted(
        f"<m{i}@acme.test>" for i in range(10))
    assert sink.handler.refused == {}
    assert sink.sessions <= 2


def test_connections_are_recycled_after_their_quota(sink: SmtpSink) -> None:
    """messages_per_connection=3: a fresh session after every third message."""
    p = pool(sink.port, connections=1, messages_per_connection=3)
    send_all(p, [f"<m{i}@acme.test>" for i in range(7)])
    assert len(sink.received) == 7 and sink.sessions == 3


def test_a_4xx_is_transient() -> None:
    """451 at end of DATA -> TransientSendError with the code."""
    with SmtpSink(Faults(tempfail=1)) as s:
        [err] = send_all(pool(s.port), ["<t@acme.test>"])
    assert isinstance(err, TransientSendError) and err.code == 451


def test_a_5xx_for_the_recipient_is_a_hard_bounce() -> None:
    """550 5.1.1 at RCPT -> RecipientRejected (the address is suppressed)."""
    with SmtpSink(Faults(reject=("gone@example.com",))) as s:
        [err] = send_all(pool(s.port), ["<r@acme.test>"], to="gone@example.com")
    assert isinstance(err, RecipientRejected) and err.code == 550


def test_a_dropped_connection_is_transient_and_the_next_send_reconnects() -> None:
    """The relay hangs up instead of answering DATA: transient; the pool recovers."""
    with SmtpSink(Faults(drop=1)) as s:
        p = pool(s.port, connections=1)
        [err] = send_all(p, ["<d@acme.test>"])
        [ok] = send_all(p, ["<d@acme.test>"])
        assert isinstance(err, TransientSendError) and err.code is None
        assert getattr(ok, "code", None) == 250 and len(s.received) == 1


def test_a_slow_relay_times_out_as_transient() -> None:
    """No answer within the timeout: transient (retried later), not a bounce."""
    with SmtpSink(Faults(slow=1.5)) as s:
        [err] = send_all(pool(s.port, timeout=0.5), ["<s@acme.test>"])
    assert isinstance(err, TransientSendError)


def test_a_quota_reply_exhausts_the_mailbox() -> None:
    """550 5.4.5 daily quota -> MailboxQuotaExhausted with a pause, not a bounce."""
    with SmtpSink(Faults(quota_after=1)) as s:
        results = send_all(pool(s.port, connections=1), ["<q1@acme.test>", "<q2@acme.test>"])
    err = results[1]
    assert isinstance(err, MailboxQuotaExhausted) and err.retry_after == 3600


def test_nobody_listening_is_transient() -> None:
    """Connection refused (relay down): transient."""
    with SmtpSink() as s:
        port = s.port
    [err] = send_all(pool(port), ["<n@acme.test>"])
    assert isinstance(err, TransientSendError)


@pytest.mark.parametrize(("code", "text", "kind"), [
    (421, "4.7.0 Try again later, closing connection", "TransientSendError"),
    (421, "4.7.28 rate limited, too many messages", "MailboxQuotaExhausted"),
    (454, "Throttling failure: Maximum sending rate exceeded.", "MailboxQuotaExhausted"),
    (550, "5.7.233 tenant exceeded its external recipient limit", "MailboxQuotaExhausted"),
    (554, "5.7.1 Relay access denied", "MailboxRejected"),
    (554, "5.7.1 Message rejected as spam", "PermanentSendError"),
    (550, "5.1.1 no such user", "RecipientRejected"),
])
def test_reply_codes_map_to_one_error_each(code: int, text: str, kind: str) -> None:
    """The single mapping of SMTP replies (DATA stage) to engine errors."""
    import aiosmtplib

    assert type(classify(aiosmtplib.SMTPDataError(code, text))).__name__ == kind
