"""The one place where nurture's errors become HTTP statuses: JSON for /api, a page elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    AlreadyEnrolled,
    AuthoringError,
    ConfigError,
    DatabaseError,
    HandedOff,
    InvalidLead,
    InvalidToken,
    InvalidTransition,
    NotFound,
    NurtureError,
    Suppressed,
    UnknownSequence,
)

# Most specific first: Suppressed is checked before anything it might also match.
STATUS: list[tuple[type[NurtureError], int]] = [
    (Suppressed, 409), (HandedOff, 409), (InvalidLead, 422), (UnknownSequence, 422),
    (AuthoringError, 422), (NotFound, 404),
    (InvalidTransition, 409), (AlreadyEnrolled, 409), (InvalidToken, 400),
    (ConfigError, 503), (DatabaseError, 503),
]


class HttpError(Exception):
    """An error the web layer itself raises (auth, CSRF, a rep acting on another's lead)."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def status_of(exc: NurtureError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def field_of(exc: NurtureError) -> str | None:
    """Which request field an error is about, for `{"error": ..., "field": ...}`."""
    if isinstance(exc, UnknownSequence | AuthoringError):
        return "sequence"
    if isinstance(exc, Suppressed | HandedOff):
        return "email"
    if isinstance(exc, InvalidLead):
        head, sep, _ = exc.message.partition(":")
        return head if sep and head.isidentifier() else "email"
    return None


def install(app: FastAPI) -> None:
    app.add_exception_handler(NurtureError, _nurture_error)
    app.add_exception_handler(HttpError, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_error)


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def respond(request: Request, status: int, message: str, field: str | None = None,
            headers: Mapping[str, str] | None = None) -> Response:
    if is_api(request):
        body: dict[str, Any] = {"error": message}
        if field:
            body["field"] = field
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))
    from engine.web.render import page  # late: render imports the templates at start-up

    return page(request, "message.html", {"title": _title(status), "text": message},
                status=status, headers=headers)


async def _nurture_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NurtureError)
    return respond(request, status_of(exc), exc.message, field_of(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return respond(request, exc.status, exc.message, exc.field, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # not a field's fault: the whole body
        return _not_json(first)
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "missing":
        message = f"{field} is required" if field else "a required value is missing"
    elif first.get("type") == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif field:
        message = f"{field}: {message}"
    return respond(request, 422, message, field)


def _not_json(error: Mapping[str, Any]) -> Response:
    reason = str(error.get("ctx", {}).get("error", "")) or "it cannot be parsed"
    loc = error.get("loc", ())
    at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
    return JSONResponse({"error": f"the body is not valid JSON: {reason}{at}", "field": None},
                        status_code=400)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    text = {404: "There is no page here.", 405: "That method is not allowed here."}.get(
        exc.status_code, str(exc.detail))
    return respond(request, exc.status_code, text, headers=exc.headers)


def _title(status: int) -> str:
    return {400: "This link does not work", 403: "Not allowed", 404: "Not found",
            409: "Not possible", 422: "Please check the form",
            503: "Unavailable"}.get(status, "Something went wrong")
