"""The rep's pages: sign in, the handoff queue, a lead's thread, and the actions on it.

Plain HTML forms (POST, CSRF token, then a 303 redirect back), rendered on the server. The
actions call services/handoff.py; a rep may not act on a handoff another rep has claimed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from engine.app import App
from engine.domain.states import HandoffState
from engine.mail.parse import parse_inbound
from engine.settings import RepConfig
from engine.web.auth import LoginThrottle, safe_next, verify
from engine.web.errors import HttpError
from engine.web.render import page
from engine.web.state import nurture, runtime, sessions

router = APIRouter(prefix="/reps", include_in_schema=False)


MAX_NAME = 200  # a rep's name; longer is not one


@router.get("/login")
async def login_form(request: Request, next: str = "/reps/") -> Response:  # noqa: A002
    return _login_page(request, next_path=safe_next(next))


@router.post("/login")
async def login(request: Request, name: str = Form(""), password: str = Form(""),
                csrf: str = Form(""), next: str = Form("/reps/")) -> Response:  # noqa: A002
    s = sessions(request)
    s.check_csrf(request, csrf)
    name = name[:MAX_NAME]  # echoed back in the page
    throttle: LoginThrottle = request.app.state.login_throttle
    wait = throttle.wait(name)
    if wait:
        return _login_page(request, next_path=safe_next(next), name=name, status=429,
                           error=f"Too many failed sign-ins for this name: try again in "
                                 f"{max(1, round(wait / 60))} min.")
    settings = nurture(request).settings
    rep = await asyncio.to_thread(verify, settings, name, password)
    if rep is None:
        # Counted for the reps that exist only: a failure for any other name would be kept
        # in memory for nothing (a stream of made-up names grew it without bound).
        if any(r.name.lower() == name.strip().lower() for r in settings.reps):
            throttle.failed(name)
        return _login_page(request, next_path=safe_next(next), name=name, status=401,
                           error="That name and password do not match a rep.")
    throttle.succeeded(name)
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


# --- the handoff queue and a lead's thread -------------------------------------------------------

SHOWS = {"active": "Waiting and claimed", "mine": "Mine", "closed": "Closed"}


@router.get("/")
async def queue(request: Request, show: str = "active") -> Response:
    rep = sessions(request).require_rep(request)
    show = show if show in SHOWS else "active"
    rows = await asyncio.to_thread(_queue, nurture(request), show, rep.name)
    return page(request, "queue.html", {"handoffs": rows, "show": show, "shows": SHOWS})


def _queue(app: App, show: str, rep: str) -> list[Any]:
    """Unclaimed first, then claimed; newest first within each (closed: newest first)."""
    handoffs = app.handoffs()
    if show == "closed":
        return list(handoffs.list(HandoffState.closed.value))[:200]
    rows = [*handoffs.list(HandoffState.open.value), *handoffs.list(HandoffState.claimed.value)]
    if show == "mine":
        rows = [h for h in rows if h.rep == rep]
    return sorted(rows, key=lambda h: (h.state != HandoffState.open.value, -h.id))


@router.get("/handoffs/{handoff_id}")
async def handoff(request: Request, handoff_id: int, done: str = "") -> Response:
    rep = sessions(request).require_rep(request)
    app = nurture(request)
    detail = await asyncio.to_thread(app.handoffs().show, handoff_id)
    full = await asyncio.to_thread(_full_texts, app, detail.thread)
    return page(request, "handoff.html", {
        "d": detail, "h": detail.handoff, "lead": detail.lead, "full": full,
        "mine": detail.handoff.rep == rep.name,
        "locked": _claimed_by_other(detail.handoff, rep.name),
        "sequences": sorted(app.catalog.sequences), "default_sequence": _nurture_track(app),
        "done": DONE.get(done, ""),
    })


DONE = {"claimed": "You have claimed this lead: it is yours to answer.",
        "closed": "Closed.", "resumed": "The lead is back in nurture."}


@router.post("/handoffs/{handoff_id}/claim")
async def claim(request: Request, handoff_id: int, csrf: str = Form("")) -> Response:
    rep = _acting_rep(request, csrf)
    app = nurture(request)
    await asyncio.to_thread(_guard, app, handoff_id, rep.name)
    await asyncio.to_thread(app.handoffs().claim, handoff_id, rep.name)
    return _back(handoff_id, "claimed")


@router.post("/handoffs/{handoff_id}/close")
async def close(request: Request, handoff_id: int, csrf: str = Form(""),
                outcome: str = Form(""), note: str = Form("")) -> Response:
    rep = _acting_rep(request, csrf)
    app = nurture(request)
    await asyncio.to_thread(_guard, app, handoff_id, rep.name)
    await asyncio.to_thread(app.handoffs().close, handoff_id, outcome, note.strip(), rep.name)
    return _back(handoff_id, "closed")


@router.post("/handoffs/{handoff_id}/resume")
async def resume(request: Request, handoff_id: int, csrf: str = Form(""),
                 sequence: str = Form("")) -> Response:
    rep = _acting_rep(request, csrf)
    app = nurture(request)
    await asyncio.to_thread(_guard, app, handoff_id, rep.name)
    wake = runtime(request).wake
    await asyncio.to_thread(app.handoffs(wake).resume, handoff_id, sequence, rep.name)
    return _back(handoff_id, "resumed")


def _acting_rep(request: Request, csrf: str) -> RepConfig:
    s = sessions(request)
    rep = s.require_rep(request)
    s.check_csrf(request, csrf)
    return rep


def _claimed_by_other(h: Any, rep: str) -> bool:
    return bool(h.state == HandoffState.claimed.value and h.rep and h.rep != rep)


def _guard(app: App, handoff_id: int, rep: str) -> None:
    """A handoff another rep has claimed is theirs: 403 (the service checks the states)."""
    h = app.store.handoffs.get(handoff_id)
    if _claimed_by_other(h, rep):
        raise HttpError(403, f"{h.rep} has claimed this lead; only they can act on it now.")


def _back(handoff_id: int, done: str) -> Response:
    return RedirectResponse(f"/reps/handoffs/{handoff_id}?done={done}", status_code=303)


def _full_texts(app: App, thread: list[Any]) -> dict[int, str]:
    """Their messages in full (the thread shows only the new text), by inbound id."""
    ids = [item.ref for item in thread if item.direction == "in"]
    raws = app.store.handoffs.raw_messages(ids)
    return {i: parse_inbound(raw).text for i, raw in raws.items() if raw}


def _nurture_track(app: App) -> str:
    """The sequence a lead most likely goes back to: a long-term track (`ripen`) if any."""
    names = sorted(app.catalog.sequences)
    for seq in app.catalog.sequences.values():
        if seq.on_finish is not None and seq.on_finish.enroll in app.catalog.sequences:
            return seq.on_finish.enroll
    return names[0] if names else ""
