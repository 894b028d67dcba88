"""A local SMTP relay for trying nurture: accepts mail on loopback, delivers it by LMTP.

aiosmtpd listens on a free loopback port; every accepted message is handed to a Dovecot
(engine/devservers/dovecot.py) over LMTP, the path a real MTA takes into a mailbox, so what the
engine sends lands in the recipients' IMAP inboxes and a reply to it reaches the watcher.
Recipients Dovecot does not know are refused with 550 at RCPT, as a real server would.
"""

from __future__ import annotations

import smtplib

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.devservers.dovecot import free_port


class _LmtpHandler:
    def __init__(self, lmtp_port: int, known: set[str]) -> None:
        self.lmtp_port, self.known = lmtp_port, known

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address.lower() not in self.known:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        try:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=10) as lmtp:
                lmtp.sendmail(envelope.mail_from or "", envelope.rcpt_tos, content)
        except (OSError, smtplib.SMTPException) as exc:
            return f"451 4.3.0 local delivery failed, try again: {exc}"
        return "250 2.0.0 delivered"


class Relay:
    """`with Relay(lmtp_port, {"a@example.com"}) as relay: relay.port`"""

    def __init__(self, lmtp_port: int, known: set[str]) -> None:
        handler = _LmtpHandler(lmtp_port, {k.lower() for k in known})
        self.port = free_port()
        self._controller = Controller(handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> Relay:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
