"""A cap on request bodies, before routing: the API, the unsubscribe POST and the sign-in form
are reachable without signing in, and FastAPI/Starlette read and parse a whole body (up to
1,000 form fields of 1 MB each) before any token or session is checked."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # an enrollment with its custom fields is a few KB; a form far less


class BodyLimit:
    """413 for a body over `limit` bytes, said by Content-Length or counted as it streams."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # streamed (chunked) past the cap: stop reading it
                return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)


async def _too_large(send: Send, limit: int) -> None:
    body = f"request body too large (at most {limit} bytes)\n".encode()
    headers: list[Any] = [(b"content-type", b"text/plain; charset=utf-8"),
                          (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
