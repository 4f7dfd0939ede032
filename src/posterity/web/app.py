"""The dashboard as a Starlette application: server-rendered pages (Jinja2) and their
``/api/…`` twins, all read-only.

Handlers are plain functions, so Starlette runs them in its thread pool: the operations
they call block on the object store, and must not stall the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..errors import PosterityError
from ..operations.context import Context
from . import views
from .auth import LOGIN_PATH, TokenGate
from .data import Dashboard

HERE = Path(__file__).parent


def _env() -> Environment:
    from ..cli.render import human_duration, human_size

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["size"] = human_size
    env.filters["duration"] = human_duration
    env.globals["version"] = __version__
    return env


SECURITY_HEADERS = {
    # Only our own script and styles run; no page can frame this one; no URL leaks onwards.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(ctx: Context, *, token: str | None = None, cache_seconds: float | None = None) -> Starlette:
    """The dashboard over ``ctx``; with ``token``, every page and API needs it."""
    if cache_seconds is None:
        cache_seconds = ctx.config.web.cache_seconds if ctx.config.web else 30.0
    board = Dashboard(ctx, cache_seconds)
    env = _env()

    def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        page = env.get_template(template).render(request=request, path=request.url.path,
                                                 now=datetime.now(UTC).isoformat(), **values)
        return HTMLResponse(page, status_code=status_code)

    def login_page(request: Request, status_code: int, error: str | None) -> Response:
        nxt = request.url.path if request.url.path != LOGIN_PATH else request.query_params.get("next", "/")
        return render(request, "login.html", status_code, error=error, next=nxt)

    def page(name: str, fn):
        def endpoint(request: Request) -> Response:
            try:
                values = fn(board, request)
            except views.NotFound as exc:
                return render(request, "error.html", 404, message=str(exc), hint="")
            except PosterityError as exc:
                return render(request, "error.html", 503, message=exc.message, hint=exc.hint)
            return render(request, name, **values)

        return endpoint

    def api(fn):
        def endpoint(request: Request) -> Response:
            try:
                data = fn(board, request)
            except views.NotFound as exc:
                return JSONResponse({"error": "not found", "message": str(exc)}, status_code=404)
            except PosterityError as exc:
                return JSONResponse(exc.to_dict(), status_code=503)
            return JSONResponse(data)

        return endpoint

    routes = [
        Route("/", page("overview.html", views.overview_page)),
        Route("/sources/{name}", page("source.html", views.source_page)),
        Route("/drills", page("drills.html", views.drills_page)),
        Route("/verify", page("verify.html", views.verify_page)),
        Route("/points", page("points.html", views.points_page)),
        Route("/audit", page("audit.html", views.audit_page)),
        Route("/api/status", api(lambda b, r: b.status())),
        Route("/api/overview", api(lambda b, r: b.overview())),
        Route("/api/sources/{name}/backups", api(views.backups_api)),
        Route("/api/sources/{name}/retention", api(views.retention_api)),
        Route("/api/drills", api(lambda b, r: b.drills(r.query_params.get("source") or None))),
        Route("/api/verify", api(lambda b, r: b.verifications())),
        Route("/api/points", api(lambda b, r: b.points())),
        Route("/api/audit", api(views.audit_api)),
        Route(LOGIN_PATH, lambda r: login_page(r, 200, None), methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = board
    app.add_middleware(TokenGate, token=token, login_page=login_page)
    app.add_middleware(SecurityHeaders)
    return app
