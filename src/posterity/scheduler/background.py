"""Long-running tasks the daemon keeps going beside its cron jobs.

Each task is a callable taking a ``threading.Event``; it runs in its own thread until the
event is set (SIGTERM) and should return promptly then. A task that raises is logged and
restarted 30 s later. Here run:

- streaming WAL (``wal = "stream"``): one streamer per source;
- `posterity doctor`'s checks, once at start, each logged (a failing check as an error);
- the archiving watch (``wal = "archive"`` sources): every ``ARCHIVING_INTERVAL`` seconds the
  alerts of ``sources/postgres/archiving.py`` become metrics, log lines and notifications
  (``failure`` when an alert starts, ``recovery`` when the last one clears).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .. import kinds

ARCHIVING_INTERVAL = 60.0
log = logging.getLogger(__name__)


def tasks(ctx: Any, alert: Callable[[str, str, str], Any] | None = None,
          metrics: Any = None, health: Any = None) -> list[Callable[[threading.Event], None]]:
    out: list[Callable[[threading.Event], None]] = [_doctor(ctx)]
    for name, cfg in sorted(ctx.config.sources.items()):
        if kinds.runs_wal_streamer(cfg):
            out.append(_streamer(ctx, name, alert))
        elif kinds.archives_by_command(cfg):
            out.append(_archiving_watch(ctx, name, cfg, alert, metrics, health))
    return out


def _doctor(ctx: Any) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        from ..operations.doctor import FAIL, WARN, doctor

        report = doctor(ctx)
        for c in report.checks:
            level = logging.ERROR if c.status == FAIL else logging.WARNING if c.status == WARN else logging.INFO
            hint = f" (hint: {c.hint})" if c.hint and c.status != "ok" else ""
            log.log(level, "doctor: %s%s: %s: %s%s", f"{c.source}: " if c.source else "", c.name, c.status,
                    c.detail, hint)
        n = report.counts()
        log.log(logging.ERROR if n["fail"] else logging.INFO, "doctor: %d ok, %d warning(s), %d failure(s).",
                n["ok"], n["warn"], n["fail"])

    run.__name__ = "doctor"
    return run


def _archiving_watch(ctx: Any, name: str, cfg: Any, alert: Any, metrics: Any,
                     health: Any = None) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        from ..errors import PosterityError
        from ..operations.health import ArchivingFact
        from ..sources.postgres import archiving

        active: set[str] = set()
        while not stop.is_set():
            try:
                s, alerts = archiving.check(cfg.dsn.get_secret_value(), cfg, ctx.state_dir, name)
            except PosterityError as exc:
                log.warning("%s: cannot check WAL archiving: %s", name, exc.message)
                if health is not None:
                    health.archived(name, ArchivingFact(error=exc.message))
                stop.wait(ARCHIVING_INTERVAL)
                continue
            if metrics is not None:
                metrics.archiving(name, s, len(alerts))
            if health is not None:  # the daemon's health snapshot: state "archiving", as `status` says
                health.archived(name, ArchivingFact(archiving.summary(s, alerts), bool(alerts)))
            kinds = {a.kind for a in alerts}
            for a in alerts:
                log.warning("%s: %s", name, a.message)
                if a.kind not in active and alert:
                    alert("failure", f"{name}: WAL archiving alert ({a.kind})", f"{a.message}\nHint: {a.hint}")
            if active and not kinds and alert:
                alert("recovery", f"{name}: WAL archiving is fine again", "No archiving alert is raised any more.")
            active = kinds
            stop.wait(ARCHIVING_INTERVAL)

    run.__name__ = f"archiving-{name}"
    return run


def _streamer(ctx: Any, name: str, alert: Any) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        from ..operations.wal import wal_stream

        wal_stream(ctx, stop, name, alert=alert)

    run.__name__ = f"walstream-{name}"
    return run


def supervise(task: Callable[[threading.Event], None], stop: threading.Event, notifier: Any,
              monotonic: Callable[[], float]) -> None:
    """Run a background task until ``stop`` is set, restarting it 30 s after a failure.
    A streak of failures is notified once (it may fail every 30 s for hours)."""
    from ..errors import PosterityError

    name = getattr(task, "__name__", str(task))
    streak = 0
    while not stop.is_set():
        began = monotonic()
        try:
            task(stop)
            return
        except Exception as exc:
            if monotonic() - began > 600:
                streak = 0  # it had run ten minutes: a new failure, worth telling
            streak += 1
            log.exception("Background task %s failed (%d in a row); restarting it in 30s.", name, streak)
            if streak == 1:
                message = exc.message if isinstance(exc, PosterityError) else f"{type(exc).__name__}: {exc}"
                hint = f"\nHint: {exc.hint}" if isinstance(exc, PosterityError) and exc.hint else ""
                notifier.event("failure", f"{name} failed",
                               f"{name} stopped: {message}{hint}\nRetried every 30s; not notified again "
                               "until it has run ten minutes.")
            stop.wait(30)
