"""Who may read the dashboard.

Rules (issue #17):
- without a token the dashboard only listens on loopback (``check_bind`` refuses anything
  else before a socket is opened);
- with a token, every page and every ``/api/…`` answers 401 unless the request carries it,
  as ``Authorization: Bearer <token>`` or as the session cookie the login form sets
  (HttpOnly, SameSite=Strict, so no other site's page can send it and no script can read it);
- comparisons are constant-time (``hmac.compare_digest``); the cookie holds an HMAC of the
  token, never the token itself, so a leaked cookie jar does not leak the token;
- ``/login`` and ``/static/…`` (the stylesheet and the vendored chart library, nothing of the
  repository) are the only paths served without it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigError

COOKIE = "posterity_session"
PUBLIC_PREFIXES = ("/static/",)
LOGIN_PATH = "/login"
MAX_FORM_BYTES = 4096


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"The listen address {listen!r} is not HOST:PORT.",
                          hint="Give an address and port, e.g. 127.0.0.1:9851 or [::1]:9851.")
    return host.strip("[]"), int(port)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve the dashboard beyond this machine without a token."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve the dashboard on {host}: only loopback addresses may be served without a token.",
            hint='Set [web] token = "${POSTERITY_WEB_TOKEN}" (or pass --token-env NAME) and put a long random '
            "value in that variable, or listen on 127.0.0.1.",
        )


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"posterity-web-session-v1", hashlib.sha256).hexdigest()


class TokenGate:
    """ASGI middleware: 401 for every request without the token (when one is configured)."""

    def __init__(self, app: ASGIApp, token: str | None, login_page) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token else None
        self.login_page = login_page  # (request, status, error) -> Response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = request.url.path
        if path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if path == LOGIN_PATH:
            response = await self._login(request)
        elif self.allowed(request):
            await self.app(scope, receive, send)
            return
        elif path.startswith("/api/"):
            response = JSONResponse({"error": "unauthorized", "message": "This dashboard needs its token.",
                                     "hint": "Send Authorization: Bearer <token>."}, status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer realm="posterity"'})
        else:
            response = self.login_page(request, 401, None)
        await response(scope, receive, send)

    def allowed(self, request: Request) -> bool:
        assert self.token is not None and self.session is not None
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.session.encode())

    async def _login(self, request: Request) -> Response:
        assert self.token is not None and self.session is not None
        if request.method != "POST":
            return self.login_page(request, 200, None)
        body = await _read_limited(request, MAX_FORM_BYTES)
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return self.login_page(request, 401, "That token is not right.")
        nxt = (form.get("next") or ["/"])[0]
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"  # never redirect off this site
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response


async def _read_limited(request: Request, limit: int) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            break
    return body[:limit]
