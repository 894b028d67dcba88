"""Who is asking: the API's bearer token, and a rep's signed session cookie with its CSRF token.

Secrets are compared in constant time (hmac.compare_digest). The session cookie is signed
with Settings.secret_key (itsdangerous), HttpOnly and SameSite=Lax; every POST form carries
the session's CSRF token, so another site cannot make a signed-in rep's browser act.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from engine.settings import RepConfig, Settings
from engine.web.errors import HttpError

COOKIE = "nurture_session"
MAX_AGE = 12 * 3600  # a working day: a rep signs in once in the morning
SALT = "nurture.rep-session"


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets (an empty expected value never matches)."""
    return bool(b) and hmac.compare_digest(a.encode(), b.encode())


# --- the API's bearer token ------------------------------------------------------------------

def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def has_token(request: Request, settings: Settings) -> bool:
    return same(bearer(request), settings.api_token)


def check_token(request: Request, settings: Settings) -> None:
    """Raise 401 unless the request carries the API token."""
    challenge = {"WWW-Authenticate": 'Bearer realm="nurture"'}
    if not settings.api_token:
        raise HttpError(401, "the HTTP API is disabled: set NURTURE_API_TOKEN on the server",
                        headers=challenge)
    if not bearer(request):
        raise HttpError(401, "send the API token in an 'Authorization: Bearer TOKEN' header",
                        headers=challenge)
    if not has_token(request, settings):
        raise HttpError(401, "the API token is not valid", headers=challenge)


# --- rep sessions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    csrf: str
    rep: str = ""
    fresh: bool = False  # not in the request's cookie yet: the response must set it


class SignInRequired(Exception):
    """A rep page was asked for without a signed-in rep: redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        key = settings.secret_key
        self._signer = URLSafeTimedSerializer(key, salt=SALT) if key else None
        self.secure = settings.base_url.startswith("https://")

    @property
    def enabled(self) -> bool:
        return self._signer is not None

    def load(self, request: Request) -> Session:
        """The request's session, or a fresh anonymous one (with a new CSRF token)."""
        cached = getattr(request.state, "session", None)
        if isinstance(cached, Session):
            return cached
        session = self._read(request.cookies.get(COOKIE, "")) or Session(
            csrf=secrets.token_urlsafe(24), fresh=True)
        request.state.session = session
        return session

    def _read(self, cookie: str) -> Session | None:
        if not cookie or self._signer is None:
            return None
        try:
            data = self._signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:  # also SignatureExpired: a stale cookie is no cookie
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        rep = data.get("rep") if isinstance(data.get("rep"), str) else ""
        return Session(csrf=data["csrf"], rep=rep or "")

    def save(self, response: Response, session: Session) -> None:
        if self._signer is None:
            return
        value = self._signer.dumps({"csrf": session.csrf, "rep": session.rep})
        response.set_cookie(COOKIE, value, max_age=MAX_AGE, path="/", httponly=True,
                            samesite="lax", secure=self.secure)

    def sign_in(self, request: Request, rep: str) -> Session:
        """A new session for `rep`, with a new CSRF token (no fixation of the old one)."""
        session = Session(csrf=secrets.token_urlsafe(24), rep=rep, fresh=True)
        request.state.session = session
        return session

    def sign_out(self, request: Request) -> Session:
        session = Session(csrf=secrets.token_urlsafe(24), fresh=True)
        request.state.session = session
        return session

    def rep(self, request: Request) -> RepConfig | None:
        """The signed-in rep, if the session names one still configured."""
        name = self.load(request).rep
        return self.settings.rep(name) if name else None

    def require_rep(self, request: Request) -> RepConfig:
        rep = self.rep(request)
        if rep is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(path)
        return rep

    def check_csrf(self, request: Request, token: str) -> None:
        if not same(token or "", self.load(request).csrf):
            raise HttpError(403, "This form has expired or did not come from this site. "
                                 "Go back, reload the page and try again.")


def login_url(next_path: str) -> str:
    return f"/reps/login?next={quote(next_path, safe='/')}"


def safe_next(next_path: str | None) -> str:
    """Only local paths: a sign-in link must not send the rep to another site."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") \
            and "\\" not in next_path:
        return next_path
    return "/reps/"


def verify(settings: Settings, name: str, password: str) -> RepConfig | None:
    """The rep whose password this is, or None (unknown rep, no password set, wrong one)."""
    rep = settings.rep(name.strip())
    expected = settings.secret(rep.password_env) if rep and rep.password_env else ""
    return rep if rep and same(password, expected) else None


class LoginThrottle:
    """Slows password guessing: after `limit` failures for a rep name within `window`
    seconds, that name is refused until the oldest failure ages out (per process)."""

    def __init__(self, limit: int = 5, window: float = 900.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait(self, name: str) -> float:
        """Seconds until `name` may try again (0: now)."""
        key, now = name.strip().lower(), time.monotonic()
        with self._lock:
            seen = self._failures.get(key)
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if not seen or len(seen) < self.limit:
                return 0.0
            return self.window - (now - seen[0])

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures[name.strip().lower()].append(time.monotonic())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name.strip().lower(), None)

