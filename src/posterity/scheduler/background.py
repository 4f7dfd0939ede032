"""Long-running tasks the daemon keeps going beside its cron jobs.

Each task is a callable taking a ``threading.Event``; it runs in its own thread until the
event is set (SIGTERM) and should return promptly then. A task that raises is logged and
restarted 30 s later. Streaming WAL (``wal = "stream"``) runs here: one streamer per source.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def tasks(ctx: Any, alert: Callable[[str, str, str], Any] | None = None) -> list[Callable[[threading.Event], None]]:
    out: list[Callable[[threading.Event], None]] = []
    for name, cfg in sorted(ctx.config.sources.items()):
        if cfg.kind == "postgres-physical" and cfg.wal == "stream":
            out.append(_streamer(ctx, name, alert))
    return out


def _streamer(ctx: Any, name: str, alert: Any) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        from ..operations.wal import wal_stream

        wal_stream(ctx, stop, name, alert=alert)

    run.__name__ = f"walstream-{name}"
    return run
