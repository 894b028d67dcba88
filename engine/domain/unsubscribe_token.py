"""Signed unsubscribe tokens: `/u/TOKEN` names the lead, its address and the sequence, and
cannot be forged.

RFC 8058 wants the one-click URL to identify both the recipient and the list without cookies
or logins, so the token carries them, HMAC-SHA256-signed with Settings.secret_key. The
recipient is a keyed hash of the address (not the address itself: the link travels in
headers and logs), so a link keeps naming the person it was sent to: after a database reset
or a migration that reuses lead ids, or after the lead's address changed, it unsubscribes
nobody (services/unsubscribe.py compares it with the lead's address now).

Tokens of the first format (`lead_id:sequence`, without the address) are refused with
OutdatedToken: the page says how to unsubscribe instead (reply "unsubscribe").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from engine.errors import ConfigError, InvalidToken, OutdatedToken

_SIG_BYTES = 16  # 128 bits: unguessable, and keeps the header short enough for one line
_TAG_BYTES = 9  # the address's keyed hash: 72 bits, 12 characters in the link
_VERSION = "r"  # marks tokens that name the recipient (old ones start with the lead id)
OUTDATED = ("This unsubscribe link comes from an email we sent before an update, and it no "
            "longer works. To stop our emails, reply to that email with the word "
            "\"unsubscribe\": we will not write to you again.")


@dataclass(frozen=True)
class UnsubscribeClaim:
    lead_id: int
    sequence: str
    recipient: str  # the keyed hash of the address the link was sent to

    def is_for(self, secret: str, email: str) -> bool:
        """Was this link sent to `email`? (constant-time comparison)"""
        return hmac.compare_digest(self.recipient, recipient_tag(secret, email))


def make_token(secret: str, lead_id: int, sequence: str, email: str) -> str:
    """The opaque token for the unsubscribe link in an email to `email`."""
    payload = f"{_VERSION}:{lead_id}:{recipient_tag(secret, email)}:{sequence}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def read_token(secret: str, token: str) -> UnsubscribeClaim:
    """The lead, recipient and sequence a token was made for; InvalidToken when forged or
    garbled, OutdatedToken when it is a valid token of the first format."""
    payload_part, _, sig_part = token.strip().partition(".")
    try:
        payload, sig = _unb64(payload_part), _unb64(sig_part)
    except ValueError:
        raise InvalidToken("this unsubscribe link is garbled") from None
    if not hmac.compare_digest(sig, _sign(secret, payload)):
        raise InvalidToken("this unsubscribe link is not valid")
    parts = payload.decode("utf-8", "replace").split(":", 3)
    if len(parts) == 4 and parts[0] == _VERSION and parts[1].isdigit():
        return UnsubscribeClaim(int(parts[1]), parts[3], parts[2])
    if parts[0].isdigit():
        raise OutdatedToken(OUTDATED)
    raise InvalidToken("this unsubscribe link is not valid")


def recipient_tag(secret: str, email: str) -> str:
    """A keyed hash of an address: names it in a link without showing it."""
    if not secret:
        _sign(secret, b"")  # the same clear ConfigError
    digest = hmac.new(secret.encode(), b"unsubscribe-recipient:" + email.strip().lower()
                      .encode(), hashlib.sha256).digest()
    return _b64(digest[:_TAG_BYTES])


def _sign(secret: str, payload: bytes) -> bytes:
    if not secret:
        raise ConfigError(
            "no secret key to sign unsubscribe links: set NURTURE_SECRET_KEY "
            "(e.g. to the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    digest = hmac.new(secret.encode(), b"unsubscribe:" + payload, hashlib.sha256).digest()
    return digest[:_SIG_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
