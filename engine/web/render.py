"""Server-rendered pages: the Jinja2 environment (autoescaped) and `page()`, which renders a
template with the session's CSRF token and signed-in rep and sets the session cookie.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.templating import Jinja2Templates

from engine.domain.schedule import assume_utc


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("engine.web", "templates"),
        # Our own page templates (not authored content): no sandbox needed, but every value
        # from a lead or a reply is untrusted text, so autoescape is on for every page.
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.filters["span"] = span
    env.filters["percent"] = percent
    return env


def page(request: Request, name: str, context: Mapping[str, Any] | None = None,
         status: int = 200, headers: Mapping[str, str] | None = None,
         keep_session: bool = False) -> Response:
    """Render a page. `keep_session`: set the session cookie when the session is new (the
    sign-in form needs its CSRF token back); public pages never set a cookie."""
    sessions = request.app.state.sessions
    session = sessions.load(request)
    ctx = {"csrf": session.csrf, "rep": sessions.rep(request), **(context or {})}
    response = TEMPLATES.TemplateResponse(request, name, ctx, status_code=status,
                                          headers=dict(headers or {}))
    # Pages are per person and carry a CSRF token: never cached by a shared cache.
    response.headers["Cache-Control"] = "no-store"
    if session.fresh and keep_session:
        sessions.save(response, session)
    return response


# --- filters ---------------------------------------------------------------------------------

def when(moment: datetime | None) -> str:
    return assume_utc(moment).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return span((datetime.now(UTC) - assume_utc(moment)).total_seconds()) + " ago"


def span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= size:
            return f"{s / size:.1f} {unit}".replace(".0 ", " ")
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


TEMPLATES = Jinja2Templates(env=environment())
