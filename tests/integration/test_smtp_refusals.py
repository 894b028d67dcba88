"""Recipient refusals from a real aiosmtpd relay, through the whole send path: the address is
suppressed and the touch failed, while the mailbox keeps sending to everyone else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.errors import RecipientRejected
from engine.mail.smtp import SmtpPool
from engine.settings import SmtpConfig
from tests.servers.engine_env import make_env, smtp_sender
from tests.servers.smtp_sink import SmtpSink

BAD = "gone@example.com"
REPLIES = {  # what real relays answer at RCPT TO for an address that does not exist
    "postfix": "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in "
               "relay recipient table",
    "exim": "550 Unrouteable address",
    "gmail": "550-5.1.1 The email account that you tried to reach does not exist. Please try"
             "\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n"
             "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser",
    "exchange": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
                "address lookup",
}


class RefusingRelay:
    """An aiosmtpd handler that refuses BAD at RCPT with one relay's words, accepts others."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.accepted: list[str] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() == BAD:
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.accepted.extend(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


@pytest.fixture(params=sorted(REPLIES))
def relay(request: pytest.FixtureRequest) -> Iterator[tuple[SmtpSink, RefusingRelay]]:
    handler = RefusingRelay(REPLIES[request.param])
    sink = SmtpSink()
    sink.handler = handler  # type: ignore[assignment] - same aiosmtpd handler interface
    with sink:
        yield sink, handler


def test_the_pool_raises_recipient_rejected(relay: tuple[SmtpSink, RefusingRelay]) -> None:
    """aiosmtplib's RCPT refusal becomes RecipientRejected with the relay's code."""
    import asyncio

    sink, _ = relay
    pool = SmtpPool("sales", SmtpConfig(host="127.0.0.1", port=sink.port, tls="none",
                                        timeout=5.0), "")

    async def go() -> None:
        try:
            await pool.send("sales@acme.test", BAD, b"Subject: x\r\n\r\nhi\r\n")
        finally:
            await pool.close()
    with pytest.raises(RecipientRejected) as info:
        asyncio.run(go())
    assert info.value.code == 550


def test_an_unknown_address_bounces_and_the_mailbox_keeps_sending(
    relay: tuple[SmtpSink, RefusingRelay], tmp_path: Path
) -> None:
    """The refused lead is suppressed and stopped; the mailbox is not paused, so the other
    lead of the same pass is delivered."""
    sink, handler = relay
    env = make_env(tmp_path, sender=smtp_sender(sink.port))
    env.enroll(BAD)
    env.enroll("ada@example.com")
    counts = env.run_once()
    assert (counts["failed"], counts["sent"]) == (1, 1)
    assert handler.accepted == ["ada@example.com"]
    assert env.store.mailboxes.paused(env.clock.now()) == {}
    assert env.store.leads.suppression(BAD) == "hard_bounce"
    stopped = {e["stop_reason"] for e in env.store.reports.enrollments() if e["stop_reason"]}
    assert stopped == {"bounced"}
