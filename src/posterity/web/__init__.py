"""The read-only web dashboard (``posterity web``; the daemon serves it when ``[web]`` is set).

- ``data.py``   what is shown, read through the CLI's own operations (same JSON shapes), cached;
- ``views.py``  per page, the values its template renders and its ``/api/…`` twin;
- ``app.py``    the Starlette application: routes, Jinja2 templates, static files;
- ``auth.py``   the token rules (loopback-only without one; Bearer header or login cookie);
- ``server.py`` binding and running uvicorn, in the foreground or on the daemon's thread;
- ``static/``   style, one small script, and uPlot vendored from npm (see static/uplot/VENDORED.md).

Nothing here changes the repository or a database.
"""

from .app import create_app
from .server import WebServer, serve_for_daemon

__all__ = ["WebServer", "create_app", "serve_for_daemon"]
