"""Unsubscribing through the signed link: read the token, suppress the address, stop its mail.

The token (domain/unsubscribe_token.py) names the lead, the address the email went to and
the sequence whose email carried the link. The lead's address must still be that one: a link
never unsubscribes someone it was not sent to (a reused lead id after a database reset, a
lead whose address changed). Unsubscribing suppresses the lead's address, which stops every
live enrollment of the lead: CAN-SPAM and RFC 8058 mean "no more mail from this sender", not
"from this list".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from engine.domain.lead import LeadRecord
from engine.domain.unsubscribe_token import read_token
from engine.errors import InvalidToken
from engine.services.ports import Clock

REASON = "unsubscribe"


class UnsubscribeStore(Protocol):
    def get_by_id(self, lead_id: int) -> LeadRecord | None: ...
    def suppression(self, email: str) -> str | None: ...
    def suppress(self, email: str, reason: str, source: str, now: datetime) -> bool: ...


@dataclass(frozen=True)
class Unsubscription:
    """Whose link it is, and whether the address is suppressed (now or before)."""

    email: str
    sequence: str
    suppressed: bool
    already: bool = False  # it was suppressed before this request


class Unsubscriber:
    def __init__(self, leads: UnsubscribeStore, clock: Clock, secret: str) -> None:
        self.leads, self.clock, self.secret = leads, clock, secret

    def check(self, token: str) -> Unsubscription:
        """Who the link is for, changing nothing (the confirmation page). InvalidToken if bad."""
        email, sequence = self._lead(token)
        reason = self.leads.suppression(email)
        return Unsubscription(email, sequence, reason is not None, reason is not None)

    def unsubscribe(self, token: str, how: str = "link") -> Unsubscription:
        """Suppress the link's address and stop its enrollments; idempotent."""
        email, sequence = self._lead(token)
        fresh = self.leads.suppress(email, REASON, f"{how}:{sequence}", self.clock.now())
        return Unsubscription(email, sequence, True, already=not fresh)

    def _lead(self, token: str) -> tuple[str, str]:
        claim = read_token(self.secret, token)
        lead = self.leads.get_by_id(claim.lead_id)
        if lead is None or not claim.is_for(self.secret, lead.email):
            # A valid signature, but that lead is gone or has another address now: the
            # person this link was sent to is not on file, so nobody is unsubscribed.
            raise InvalidToken("this unsubscribe link is for an address we do not know")
        return lead.email, claim.sequence
