"""The web application: the JSON API, unsubscribe links, rep and marketer pages, health and
metrics, built by `create_app(app, runtime)` for the daemon's HTTP task and for tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from engine import __version__
from engine.app import App
from engine.web import api, errors, marketer, metrics, pages, unsubscribe
from engine.web.auth import LoginThrottle, Sessions, SignInRequired, login_url
from engine.web.limits import BodyLimit
from engine.web.state import Runtime

# Our pages load nothing from elsewhere and run no script.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
# Swagger UI at /docs: its own files too (served below, so it works offline), but it starts
# from an inline script and sets inline styles.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
SWAGGER_UI = "/docs/ui"


def create_app(app: App, runtime: Runtime | None = None) -> FastAPI:
    web = FastAPI(
        title="nurture", version=__version__,
        description="Enroll leads, change their stage, stop them; unsubscribe links; the rep "
                    "and marketer pages; health and metrics. API calls need "
                    "`Authorization: Bearer <NURTURE_API_TOKEN>`.",
        docs_url=None, redoc_url=None,
    )
    rt = runtime or Runtime()
    web.state.nurture = app
    web.state.runtime = rt
    web.state.sessions = Sessions(app.settings)
    web.state.login_throttle = LoginThrottle()
    web.state.metrics = metrics.registry(app, rt)
    for router in (api.router, unsubscribe.router, pages.router, marketer.router,
                   metrics.router):
        web.include_router(router)
    web.mount("/static", StaticFiles(packages=[("engine.web", "static")]), name="static")
    web.mount(SWAGGER_UI, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    errors.install(web)
    web.add_exception_handler(SignInRequired, _to_login)
    web.middleware("http")(_security_headers)
    web.add_middleware(BodyLimit)  # outermost: before any route reads a body

    @web.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/reps/", status_code=303)

    @web.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=web.openapi_url or "/openapi.json", title=f"{web.title} API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png")

    return web


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


async def _security_headers(request: Request,
                            call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    docs = request.url.path == "/docs"
    response.headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response
