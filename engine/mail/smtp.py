"""Sending over SMTP with aiosmtplib: a small pool of reused connections per mailbox, and the
one place where SMTP replies become errors.

4xx, timeouts and dropped connections -> TransientSendError (retry with backoff).
Quota and rate replies (5.7.233, 5.4.5, 4.7.x "rate"/"limit") -> MailboxQuotaExhausted.
5xx that refuse the recipient address (5.1.x, "user unknown", "recipient address rejected",
"mailbox unavailable" ...) -> RecipientRejected (a hard bounce for THAT address). This is
decided before the mailbox words: Postfix says "User unknown in relay recipient table".
Refusals of our own mailbox (authentication, MAIL FROM, 5.1.7/5.1.8, relaying denied) ->
MailboxRejected. Other 5xx at RCPT -> RecipientRejected; other 5xx -> PermanentSendError.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib
import structlog

from engine.errors import (
    MailboxQuotaExhausted,
    MailboxRejected,
    PermanentSendError,
    RecipientRejected,
    SendError,
    TransientSendError,
)
from engine.settings import MailboxConfig, SmtpConfig

log = structlog.get_logger(__name__)

NOOP_AFTER = 30.0  # seconds idle before a pooled connection is checked with NOOP
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_RATE_WORDS = re.compile(r"rate|limit|quota|too many|throttl", re.IGNORECASE)
_DAILY_WORDS = re.compile(r"daily|per day|24 ?h", re.IGNORECASE)
# How relays say "this address does not exist" (Postfix, Exim, Sendmail, Gmail, Exchange).
_RECIPIENT_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|recipient|mailbox|account)|recipient address"
    r" rejected|recipient not found|recipientnotfound|mailbox (unavailable|not found|does not"
    r" exist)|does not exist|unrouteable address|invalid recipient|"
    r"account (has been )?disabled",
    re.IGNORECASE)
# Our own address refused: Postfix says "<us>: Sender address rejected: User unknown in
# local recipient table" (5.1.0, at RCPT), Exchange "5.1.8 Access denied, bad outbound sender".
_SENDER_WORDS = re.compile(
    r"sender address|outbound sender|sender domain|sender (is )?(denied|not allowed|blocked|"
    r"rejected)", re.IGNORECASE)
# ... and "you (our mailbox) may not send": the relay's refusal of us, not of the lead.
_MAILBOX_WORDS = re.compile(r"relay|authenticat", re.IGNORECASE)
_SENDER_STATUSES = ("5.1.7", "5.1.8")  # RFC 3463: bad *sender* mailbox / system
# "This message is too big" (RFC 3463 5.3.4, 5.2.3; Exim says it in words alone), which a
# relay may answer to MAIL FROM's SIZE=: the message fails, the mailbox is not at fault.
_SIZE_STATUSES = ("5.3.4", "5.2.3")
_SIZE_WORDS = re.compile(r"message (size )?exceeds|too (big|large)", re.IGNORECASE)
DAILY_QUOTA_PAUSE = 3600.0
RATE_PAUSE = 60.0
REJECTED_PAUSE = 900.0


@dataclass(frozen=True)
class SmtpReply:
    code: int
    text: str


def enhanced_status(text: str) -> str:
    """The RFC 3463 status in a reply (`5.1.1`), or ''."""
    m = _ENHANCED.search(text or "")
    return ".".join(m.groups()) if m else ""


def classify(exc: BaseException) -> SendError:
    """The SendError an aiosmtplib (or socket) failure means for the touch and the mailbox."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _from_reply(exc)
    if isinstance(exc, (OSError, asyncio.TimeoutError, aiosmtplib.SMTPException)):
        return TransientSendError(f"connection problem: {type(exc).__name__}: {exc}")
    return TransientSendError(f"unexpected {type(exc).__name__}: {exc}")


def _from_reply(exc: aiosmtplib.SMTPResponseException) -> SendError:
    code, text = exc.code, str(exc.message)
    said = f"{code} {text}".strip()
    status = enhanced_status(text)
    quota = _quota(code, status, text, said)
    if quota is not None:
        return quota
    if 400 <= code < 500 or code < 200:
        return TransientSendError(said, code)
    if status in _SIZE_STATUSES or (not status and _SIZE_WORDS.search(text)):
        return PermanentSendError(f"the relay refuses the message's size: {said}", code)
    if isinstance(exc, (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPSenderRefused,
                        aiosmtplib.SMTPHeloError, aiosmtplib.SMTPConnectResponseError)):
        return MailboxRejected(f"the relay refuses this mailbox: {said}", code, REJECTED_PAUSE)
    # Before the mailbox words: "Recipient address rejected: User unknown in relay recipient
    # table" names the lead's address, and pausing the mailbox for it would retry forever.
    if _refuses_recipient(status, text):
        return RecipientRejected(said, code)
    if status in _SENDER_STATUSES or _SENDER_WORDS.search(text) or _MAILBOX_WORDS.search(text):
        return MailboxRejected(f"the relay refuses this mailbox: {said}", code, REJECTED_PAUSE)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused) and not status.startswith("5.7."):
        return RecipientRejected(said, code)
    return PermanentSendError(said, code)


def _quota(code: int, status: str, text: str, said: str) -> MailboxQuotaExhausted | None:
    """A relay's sending quota or rate limit for our mailbox (a pause, not a failure)."""
    if status in ("5.7.233", "5.4.5"):
        return MailboxQuotaExhausted(f"sending quota used up: {said}", code, DAILY_QUOTA_PAUSE)
    if 400 <= code < 500 and (status.startswith("4.7.") or code in (421, 454)) \
            and _RATE_WORDS.search(text):
        pause = DAILY_QUOTA_PAUSE if _DAILY_WORDS.search(text) else RATE_PAUSE
        return MailboxQuotaExhausted(f"rate limited: {said}", code, pause)
    return None


def _refuses_recipient(status: str, text: str) -> bool:
    """5.1.x (but not the sender's 5.1.7/5.1.8), or the words of an unknown address with
    no status, a generic 5.0.0, a 5.1.x or a 5.5.x (Exchange's "mailbox unavailable")."""
    if _SENDER_WORDS.search(text):
        return False
    if status == "5.2.1" or (status.startswith("5.1.") and status not in _SENDER_STATUSES):
        return True  # 5.2.1: the address's mailbox is disabled (Gmail: a closed account)
    plain = status == "" or status.startswith(("5.0.", "5.5."))
    return plain and bool(_RECIPIENT_WORDS.search(text))


@dataclass
class _Conn:
    client: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class SmtpPool:
    """Up to `connections` open SMTP sessions to one mailbox's relay, reused and recycled."""

    def __init__(self, mailbox: str, cfg: SmtpConfig, password: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mailbox, self.cfg, self._password, self._clock = mailbox, cfg, password, clock
        self._slots = asyncio.Semaphore(max(cfg.connections, 1))
        self._idle: list[_Conn] = []

    async def send(self, sender: str, recipient: str, raw: bytes) -> SmtpReply:
        """One SMTP transaction; raises a classified SendError. Not cancelled midway by us."""
        async with self._slots:
            conn = await self._checkout()
            try:
                _, response = await conn.client.sendmail(sender, [recipient], raw)
            except Exception as exc:
                await _close(conn, quit_first=False)
                raise classify(exc) from exc
            conn.sent += 1
            await self._checkin(conn)
            return SmtpReply(250, response)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn, quit_first=True)

    async def _checkout(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if await self._usable(conn):
                return conn
        return await self._connect()

    async def _usable(self, conn: _Conn) -> bool:
        if not conn.client.is_connected:
            return False
        if self._clock() - conn.idle_since < NOOP_AFTER:
            return True
        try:  # the relay may have dropped an idle session: find out before MAIL FROM
            await conn.client.noop()
            return True
        except Exception:  # noqa: BLE001 - any failure means: open a fresh one
            await _close(conn, quit_first=False)
            return False

    async def _connect(self) -> _Conn:
        cfg = self.cfg
        client = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
            username=cfg.username or None, password=self._password or None,
            use_tls=cfg.tls == "tls", start_tls=cfg.tls == "starttls",
        )
        try:
            await client.connect()
        except Exception as exc:
            raise classify(exc) from exc
        log.debug("smtp_connected", mailbox=self.mailbox, host=cfg.host, port=cfg.port)
        return _Conn(client)

    async def _checkin(self, conn: _Conn) -> None:
        if conn.sent >= self.cfg.messages_per_connection:
            await _close(conn, quit_first=True)  # relays advise ~100 messages a session
            return
        conn.idle_since = self._clock()
        self._idle.append(conn)


async def _close(conn: _Conn, quit_first: bool) -> None:
    try:
        if quit_first and conn.client.is_connected:
            await conn.client.quit()
    except Exception:  # noqa: BLE001 - closing anyway
        pass
    conn.client.close()


class SmtpSender:
    """The Sender port: one pool per configured mailbox, made on first use."""

    def __init__(self, mailboxes: dict[str, MailboxConfig],
                 secret: Callable[[str], str]) -> None:
        self._mailboxes, self._secret = mailboxes, secret
        self._pools: dict[str, SmtpPool] = {}

    async def send(self, mailbox: str, sender: str, recipient: str, raw: bytes) -> SmtpReply:
        pool = self._pools.get(mailbox)
        if pool is None:
            cfg = self._mailboxes[mailbox].smtp
            pool = self._pools[mailbox] = SmtpPool(mailbox, cfg, self._secret(cfg.password_env))
        return await pool.send(sender, recipient, raw)

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()
