"""Serving the dashboard: in the foreground (``posterity web``) or on a thread (the daemon).

The socket is bound here, before uvicorn starts, so a bad or busy address is a clear
``ConfigError`` (not a log line from a server that then exits), and port 0 works for tests.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from ..errors import ConfigError
from ..operations.context import Context
from .auth import check_bind, split_listen

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9851"


def resolve_token(ctx: Context, token_env: str | None) -> str | None:
    """The token from ``--token-env NAME`` (wins) or ``[web] token``; None when neither is set."""
    if token_env:
        value = os.environ.get(token_env, "")
        if not value.strip():
            raise ConfigError(f"--token-env {token_env}: that environment variable is not set or empty.",
                              hint=f"export {token_env}=<a long random value> (e.g. `openssl rand -hex 32`).")
        return value.strip()
    web = ctx.config.web
    if web is not None and web.token is not None:
        value = web.token.get_secret_value().strip()
        if not value:
            raise ConfigError("[web] token is empty.", hint="Set it to a long random value, e.g. from ${POSTERITY_WEB_TOKEN}.")
        return value
    return None


def bind(listen: str, token: str | None) -> socket.socket:
    host, port = split_listen(listen)
    check_bind(host, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot listen on {listen}: {exc.strerror or exc}.",
                          hint="Pick another address or port with --listen (or [web] listen).") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class WebServer:
    """uvicorn on an already-bound socket; ``start()`` runs it on a thread, ``run()`` here."""

    def __init__(self, ctx: Context, listen: str, token: str | None, cache_seconds: float | None = None) -> None:
        import uvicorn

        from .app import create_app

        self.sock = bind(listen, token)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        app = create_app(ctx, token=token, cache_seconds=cache_seconds)
        self.dashboard = app.state.dashboard
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                server_header=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.warm_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def run(self) -> None:
        if self.dashboard.cache.ttl > 0:
            self.warm_thread = threading.Thread(target=self.dashboard.warm, name="web-warm", daemon=True)
            self.warm_thread.start()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="web", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def serve_for_daemon(ctx: Context) -> WebServer | None:
    """The daemon's hook: serve the dashboard on a thread when ``[web]`` is configured."""
    web = ctx.config.web
    if web is None:
        return None
    server = WebServer(ctx, web.listen, resolve_token(ctx, None), web.cache_seconds)
    server.start()
    log.info("Serving the dashboard on %s.", server.url)
    return server
