"""``posterity web``: serve the read-only dashboard."""

from __future__ import annotations

import click

from .common import pass_state


@click.command("web")
@click.option("--listen", metavar="HOST:PORT",
              help="Address to serve on (default: [web] listen, else 127.0.0.1:9851). Anything but loopback "
              "needs a token.")
@click.option("--token-env", metavar="NAME",
              help="Read the dashboard's token from this environment variable (default: [web] token).")
@pass_state
def web(state, listen: str | None, token_env: str | None) -> None:
    """Serve a read-only dashboard: every source's state (the same answer as `posterity status`),
    backups with their retention verdicts, drills, verify runs, restore points and the audit
    trail, each page also as JSON under /api/… (/api/status is `posterity --json status`).

    Listens on 127.0.0.1 unless told otherwise, and refuses any other address without a
    token. With a token every page and API answers 401 until it is sent, as
    `Authorization: Bearer TOKEN` or through the login form (an HttpOnly, SameSite=Strict
    cookie). Nothing here changes the repository.

    \b
    Examples:
      posterity web
      POSTERITY_WEB_TOKEN=$(openssl rand -hex 32) posterity web --listen 0.0.0.0:9851 --token-env POSTERITY_WEB_TOKEN
    """
    from ..web.server import DEFAULT_LISTEN, WebServer, resolve_token

    ctx = state.context()
    token = resolve_token(ctx, token_env)
    web_cfg = ctx.config.web
    address = listen or (web_cfg.listen if web_cfg else DEFAULT_LISTEN)
    server = WebServer(ctx, address, token)
    click.echo(f"Serving the dashboard on {server.url}" + (" (token required)" if token else "")
               + "; Ctrl-C stops it.", err=True)
    server.run()


def register(cli: click.Group) -> None:
    cli.add_command(web)
