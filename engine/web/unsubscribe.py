"""The unsubscribe link: GET shows a confirmation page, POST unsubscribes (RFC 8058).

Mail scanners follow links with GET, so GET never changes anything. The one-click POST
(body `List-Unsubscribe=One-Click`) needs no cookie, login or CSRF token: the signed token in
the URL is the authority. It gets a bare 200; the confirmation form's POST gets a page.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from engine.web.render import page
from engine.web.state import nurture

router = APIRouter(include_in_schema=False)


@router.get("/u/{token}")
async def confirm(request: Request, token: str) -> Response:
    who = await asyncio.to_thread(nurture(request).unsubscriber.check, token)
    return page(request, "unsubscribe.html",
                {"email": who.email, "already": who.already, "done": False})


@router.post("/u/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    done = await asyncio.to_thread(nurture(request).unsubscriber.unsubscribe, token,
                                   "one-click" if one_click else "link")
    if one_click:
        return PlainTextResponse("unsubscribed\n", headers={"Cache-Control": "no-store"})
    return page(request, "unsubscribe.html",
                {"email": done.email, "already": False, "done": True})
