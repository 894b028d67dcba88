"""Signed unsubscribe tokens: `/u/TOKEN` names the lead and the sequence, and cannot be forged.

RFC 8058 wants the one-click URL to identify both the recipient and the list without cookies
or logins, so the token carries them, HMAC-SHA256-signed with Settings.secret_key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from engine.errors import ConfigError, InvalidToken

_SIG_BYTES = 16  # 128 bits: unguessable, and keeps the header short enough for one line


@dataclass(frozen=True)
class UnsubscribeClaim:
    lead_id: int
    sequence: str


def make_token(secret: str, lead_id: int, sequence: str) -> str:
    """The opaque token for a lead's unsubscribe link."""
    payload = f"{lead_id}:{sequence}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def read_token(secret: str, token: str) -> UnsubscribeClaim:
    """The lead and sequence a token was made for; InvalidToken when forged or garbled."""
    payload_part, _, sig_part = token.strip().partition(".")
    try:
        payload, sig = _unb64(payload_part), _unb64(sig_part)
    except ValueError:
        raise InvalidToken("this unsubscribe link is garbled") from None
    if not hmac.compare_digest(sig, _sign(secret, payload)):
        raise InvalidToken("this unsubscribe link is not valid")
    lead, _, sequence = payload.decode("utf-8", "replace").partition(":")
    if not lead.isdigit():
        raise InvalidToken("this unsubscribe link is not valid")
    return UnsubscribeClaim(int(lead), sequence)


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
