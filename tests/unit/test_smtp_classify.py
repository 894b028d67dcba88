"""mail/smtp.py classify(): real-world SMTP replies, each mapped to one engine error.

The replies are the ones Postfix, Exim, Sendmail, Gmail, Exchange / Microsoft 365, Yahoo and
Amazon SES send (multi-line replies as aiosmtplib joins them). The stage says which
aiosmtplib exception carries the reply: MAIL FROM, RCPT TO or DATA.
"""

from __future__ import annotations

import aiosmtplib
import pytest

from engine.errors import (
    MailboxQuotaExhausted,
    MailboxRejected,
    PermanentSendError,
    RecipientRejected,
    SendError,
    TransientSendError,
)
from engine.mail.smtp import DAILY_QUOTA_PAUSE, RATE_PAUSE, classify

TO, FROM = "ada@example.com", "sales@acme.test"


def reply(stage: str, code: int, text: str) -> aiosmtplib.SMTPResponseException:
    if stage == "rcpt":
        return aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(code, text, TO)])
    if stage == "mail":
        return aiosmtplib.SMTPSenderRefused(code, text, FROM)
    return aiosmtplib.SMTPDataError(code, text)


RECIPIENT = [  # the lead's address does not exist: a hard bounce for that address only
    ("rcpt", 550, "5.1.1 <ada@example.com>: Recipient address rejected: User unknown in relay "
                  "recipient table"),  # Postfix relay_recipient_maps
    ("rcpt", 550, "5.1.1 <ada@example.com>: Recipient address rejected: User unknown in "
                  "virtual mailbox table"),  # Postfix
    ("rcpt", 550, "5.1.1 <ada@example.com>... User unknown"),  # Sendmail
    ("rcpt", 550, "Unrouteable address"),  # Exim
    ("rcpt", 550, "No Such User Here"),  # Exim / cPanel
    ("rcpt", 550, "5.1.1 The email account that you tried to reach does not exist. Please "
                  "try\n5.1.1 double-checking the recipient's email address for typos or\n"
                  "5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"),
    ("rcpt", 550, "5.2.1 The email account that you tried to reach is disabled."),  # Gmail
    ("rcpt", 550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
                  "address lookup"),  # Microsoft 365
    ("rcpt", 550, "5.5.0 Requested action not taken: mailbox unavailable"),  # Exchange / IIS
    ("rcpt", 554, "delivery error: dd This user doesn't have a yahoo.com account "
                  "(ada@yahoo.com) [0] - mta1042.mail.ir2.yahoo.com"),  # Yahoo
    ("data", 550, "5.1.1 <ada@example.com>: Recipient address rejected: User unknown in "
                  "relay recipient table"),  # the same, refused at DATA
    ("data", 550, "Requested action not taken: mailbox unavailable"),
]
MAILBOX = [  # the relay refuses our mailbox: pause it, the lead is not at fault
    ("rcpt", 554, "5.7.1 <ada@example.com>: Relay access denied"),  # Postfix
    ("rcpt", 550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain"),  # Exchange
    ("rcpt", 550, "5.1.0 <sales@acme.test>: Sender address rejected: User unknown in local "
                  "recipient table"),  # Postfix reject_unlisted_sender, answered at RCPT
    ("rcpt", 553, "5.7.1 <sales@acme.test>: Sender address rejected: not owned by user sam"),
    ("mail", 530, "5.7.57 Client not authenticated to send mail."),  # Microsoft 365
    ("mail", 550, "5.1.8 Access denied, bad outbound sender"),  # Microsoft 365
    ("data", 550, "5.1.8 Access denied, bad outbound sender"),
    ("mail", 553, "5.1.7 The sender address <sales@acme> is not a valid RFC-5321 address."),
]
PERMANENT = [  # this message was refused, not the address: fail the touch, no suppression
    ("data", 554, "5.7.1 Message rejected as spam"),
    ("rcpt", 550, "5.7.1 <ada@example.com>: Recipient address rejected: Access denied"),
    ("data", 552, "5.3.4 Message size exceeds fixed limit"),
    # SIZE= with MAIL FROM: the relay refuses this message's size before RCPT, not our mailbox
    ("mail", 552, "5.3.4 Message size exceeds fixed maximum message size"),  # Postfix
    ("mail", 552, "Message size exceeds maximum permitted"),  # Exim, no status
    ("mail", 552, "5.2.3 Message exceeds maximum size"),
    ("data", 550, "5.7.350 Remote server returned message detected as spam"),  # M365
]
TRANSIENT = [  # retry with backoff, counted as an attempt
    ("data", 421, "4.7.0 Try again later, closing connection."),  # Gmail
    ("rcpt", 450, "4.1.1 <ada@example.com>: Recipient address rejected: unverified address"),
    ("rcpt", 452, "4.2.2 The email account that you tried to reach is over quota."),  # Gmail
    ("data", 451, "4.3.0 Temporary lookup failure"),
    ("data", 451, "4.7.500 Server busy. Please try again later from [203.0.113.5]."),  # M365
]
QUOTA = [  # the relay's sending quota or rate for our mailbox: pause, then resume
    ("data", 550, "5.4.5 Daily user sending limit exceeded.", DAILY_QUOTA_PAUSE),  # Gmail
    ("data", 554, "5.7.233 Your message can't be sent because your tenant exceeded its limit "
                  "for external recipients", DAILY_QUOTA_PAUSE),  # Microsoft 365
    ("data", 454, "Throttling failure: Maximum sending rate exceeded.", RATE_PAUSE),  # SES
    ("data", 454, "Throttling failure: Daily message quota exceeded.", DAILY_QUOTA_PAUSE),
    ("data", 421, "4.7.28 Our system has detected an unusual rate of unsolicited mail",
     RATE_PAUSE),  # Gmail
    ("mail", 451, "4.7.0 Rate limit exceeded, too many messages", RATE_PAUSE),
]


def _kind(err: SendError) -> type[SendError]:
    return type(err)


@pytest.mark.parametrize(("stage", "code", "text"), RECIPIENT)
def test_a_refused_address_is_a_hard_bounce(stage: str, code: int, text: str) -> None:
    """An unknown or closed address: RecipientRejected, never a mailbox pause."""
    assert _kind(classify(reply(stage, code, text))) is RecipientRejected


@pytest.mark.parametrize(("stage", "code", "text"), MAILBOX)
def test_a_refusal_of_our_mailbox_pauses_it(stage: str, code: int, text: str) -> None:
    """Relaying denied, sender refused, not authenticated: MailboxRejected (a pause)."""
    err = classify(reply(stage, code, text))
    assert _kind(err) is MailboxRejected and err.retry_after


@pytest.mark.parametrize(("stage", "code", "text"), PERMANENT)
def test_a_refused_message_fails_without_bouncing(stage: str, code: int, text: str) -> None:
    """Spam, policy or size refusals: PermanentSendError, not a bounce of the address."""
    assert _kind(classify(reply(stage, code, text))) is PermanentSendError


@pytest.mark.parametrize(("stage", "code", "text"), TRANSIENT)
def test_a_temporary_reply_is_retried(stage: str, code: int, text: str) -> None:
    """4xx that are not about our sending rate: TransientSendError (counted retry)."""
    assert _kind(classify(reply(stage, code, text))) is TransientSendError


@pytest.mark.parametrize(("stage", "code", "text", "pause"), QUOTA)
def test_a_quota_or_rate_reply_pauses_the_mailbox_for_its_window(
    stage: str, code: int, text: str, pause: float
) -> None:
    """Quota replies pause about an hour (daily quotas), rate replies about a minute."""
    err = classify(reply(stage, code, text))
    assert _kind(err) is MailboxQuotaExhausted and err.retry_after == pause


def test_a_bad_password_pauses_the_mailbox() -> None:
    """535 at AUTH: MailboxRejected, with the relay's words kept."""
    err = classify(aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Username and Password not "
                                                           "accepted"))
    assert _kind(err) is MailboxRejected and "Username and Password" in err.message
