"""The marketer's page: per sequence and per step, what was sent and what came back."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from engine.store.stats import step_names
from engine.web.auth import has_token
from engine.web.render import page
from engine.web.state import nurture, sessions

router = APIRouter(tags=["pages"])


@router.get("/stats", summary="Per sequence and step: enrolled, sent, replied, ...")
async def stats(request: Request) -> Response:
    """For signed-in reps, or with the API token (`Accept: application/json` for JSON)."""
    app = nurture(request)
    if not has_token(request, app.settings):
        sessions(request).require_rep(request)
    names = step_names(app.catalog.sequences)
    data = await asyncio.to_thread(app.store.stats.sequences, names)
    if "application/json" in request.headers.get("accept", ""):
        from fastapi.responses import JSONResponse

        return JSONResponse([s.as_dict() for s in data])
    return page(request, "stats.html", {"sequences": data})
