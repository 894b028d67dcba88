"""The one exception tree of nurture. Imports nothing from engine.

Each class's docstring is its default message; subclasses carry the data an entry point
needs to explain the problem (file, line, SMTP code). Entry points (cli/, web/) are the only
places that turn these into exit codes and HTTP statuses.
"""

from __future__ import annotations

from dataclasses import dataclass


class NurtureError(Exception):
    """Something went wrong in nurture."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Problem:
    """One problem found in authored content, reported as `file:line: message`."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class ConfigError(NurtureError):
    """The configuration is invalid."""


class AuthoringError(NurtureError):
    """A sequence or template has problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems) or "invalid sequence")


class UnknownSequence(NurtureError):
    """No such sequence."""


class RenderError(NurtureError):
    """A template failed to render."""

    def __init__(self, template: str, line: int | None, message: str) -> None:
        self.template, self.line = template, line
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message}")


class HeaderInjection(RenderError):
    """A rendered header value carries a control character (CR, LF, NUL)."""


class InvalidLead(NurtureError):
    """The lead data is invalid."""


class Suppressed(NurtureError):
    """The address is on the suppression list."""

    def __init__(self, email: str, reason: str) -> None:
        self.email, self.reason = email, reason
        super().__init__(f"{email} is suppressed ({reason}); it is never sent to")


class AlreadyEnrolled(NurtureError):
    """The lead is already active in this sequence."""


class HandedOff(NurtureError):
    """The lead replied and is with a rep: not enrolled until the handoff is closed."""

    def __init__(self, email: str, reason: str) -> None:
        self.email, self.reason = email, reason
        super().__init__(
            f"{email} replied and is with a rep ({reason}); it is not enrolled while the rep "
            "works the lead. Once the handoff is closed (won, lost, not now) it can be "
            "enrolled again, or the rep puts it back into nurture (`nurture handoff resume`)")


class NotFound(NurtureError):
    """No such record."""


class InvalidTransition(NurtureError):
    """That action is not possible in the record's current state."""


class SendError(NurtureError):
    """Sending failed."""

    def __init__(self, message: str, code: int | None = None,
                 retry_after: float | None = None) -> None:
        self.code = code
        self.retry_after = retry_after  # seconds the relay asks us to wait, when it says
        super().__init__(message)


class TransientSendError(SendError):
    """A temporary SMTP failure (4xx, dropped connection, timeout): retry with backoff."""


class PermanentSendError(SendError):
    """A permanent SMTP failure (5xx): the touch fails and the address bounces."""


class MailboxQuotaExhausted(TransientSendError):
    """The relay says the mailbox's sending quota is used up: pause that mailbox."""


class MailboxError(NurtureError):
    """The IMAP mailbox could not be reached or read."""


class ScheduleError(NurtureError):
    """A touch's time cannot be computed (a send window with no open day, a bad cron)."""


class DatabaseError(NurtureError):
    """The database could not be reached or is not at the expected schema."""


class MailboxRejected(TransientSendError):
    """The relay refuses this mailbox itself (authentication, sender): pause it, fix config."""


class InvalidToken(NurtureError):
    """The link is invalid or was tampered with."""


class OutdatedToken(InvalidToken):
    """This unsubscribe link is from an older email and no longer works."""


class RecipientRejected(PermanentSendError):
    """The relay refused the recipient address (5xx at RCPT, or 5.1.x): a hard bounce."""


class ConcurrentUpdate(NurtureError):
    """Another process changed the same records at the same moment; try again."""


class RetryLater(NurtureError):
    """The work failed for a reason that passes (the database is briefly unavailable): do the
    same work again later; never skip it."""
