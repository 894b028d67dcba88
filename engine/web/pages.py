"""The rep's pages: sign in, the handoff queue, a lead's thread, and the actions on it.

Plain HTML forms (POST, CSRF token, then a 303 redirect back), rendered on the server. The
actions call services/handoff.py; a rep may not act on a handoff another rep has claimed.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from engine.web.auth import safe_next, verify
from engine.web.render import page
from engine.web.state import nurture, sessions

router = APIRouter(prefix="/reps", include_in_schema=False)


@router.get("/login")
async def login_form(request: Request, next: str = "/reps/") -> Response:  # noqa: A002
    return _login_page(request, next_path=safe_next(next))


@router.post("/login")
async def login(request: Request, name: str = Form(""), password: str = Form(""),
                csrf: str = Form(""), next: str = Form("/reps/")) -> Response:  # noqa: A002
    s = sessions(request)
    s.check_csrf(request, csrf)
    rep = await asyncio.to_thread(verify, nurture(request).settings, name, password)
    if rep is None:
        return _login_page(request, next_path=safe_next(next), name=name, status=401,
                           error="That name and password do not match a rep.")
    response = RedirectResponse(safe_next(next), status_code=303)
    s.save(response, s.sign_in(request, rep.name))
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    s = sessions(request)
    s.check_csrf(request, csrf)
    response = RedirectResponse("/reps/login", status_code=303)
    s.save(response, s.sign_out(request))
    return response


def _login_page(request: Request, next_path: str, name: str = "", error: str = "",
                status: int = 200) -> Response:
    s = sessions(request)
    disabled = "" if s.enabled else (
        "Sign-in is off: the server has no NURTURE_SECRET_KEY to sign sessions with.")
    return page(request, "login.html", {"next": next_path, "name": name, "error": error,
                                        "disabled": disabled},
                status=status, keep_session=True)
