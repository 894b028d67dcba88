"""The marketer's page: per sequence and per step, what was sent and what came back."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

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
    names = {name: [step.name for step in seq.steps]
             for name, seq in app.catalog.sequences.items()}
    data = await asyncio.to_thread(app.store.stats.sequences, names)
    if "application/json" in request.headers.get("accept", ""):
        from fastapi.responses import JSONResponse

        return JSONResponse([{
            "sequence": s.totals.name,
            "totals": _counts(s.totals),
            "steps": [_counts(c) for c in s.steps],
        } for s in data])
    return page(request, "stats.html", {"sequences": data})


def _counts(c: object) -> dict[str, object]:
    keys = ("name", "enrolled", "sent", "replied", "auto_replied", "bounced", "unsubscribed",
            "contacted", "reply_rate", "median_to_touch")
    return {k: getattr(c, k) for k in keys}
