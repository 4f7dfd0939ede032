"""What a daemon job does after its backups: drill its sources, prune; and how an exception
outside the error tree becomes one the daemon can record and notify.

Functions over the running :class:`~posterity.scheduler.daemon.Daemon` (its context, locks,
notifier, metrics and health snapshot), kept apart so ``daemon.py`` stays the loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import LockHeld, PosterityError

if TYPE_CHECKING:
    from ..operations.prune import PruneReport
    from .daemon import Daemon, JobRun
    from .plan import Job

log = logging.getLogger("posterity.daemon")


def unexpected(exc: BaseException) -> PosterityError:
    """An exception outside the error tree, as one the daemon can record and notify."""
    return PosterityError(f"unexpected {type(exc).__name__}: {exc}",
                          hint="This is a bug: the traceback is in the daemon's log; please report it.")


def drill_sources(d: Daemon, job: Job, run: JobRun) -> None:
    """Restore-drill each drillable source of the job; a failure counts as the job's."""
    from ..operations.drill import DRILLS, drill

    for source in job.sources:
        cfg = d.ctx.config.sources.get(source)
        if cfg is None or cfg.kind not in DRILLS or d.stop_event.is_set():
            continue
        lock = d._source_locks[source]
        with lock:
            try:
                report = drill(d.ctx, source)
            except Exception as exc:
                if not isinstance(exc, PosterityError):
                    log.exception("%s: the restore drill failed unexpectedly", source)
                    exc = unexpected(exc)
                run.errors[f"drill:{source}"] = exc
                log.error("%s: restore drill failed: %s", source, exc.message)
                d.notifier.event("failure", f"{source}: restore drill failed",
                                 f"Job {job.name}: the drill of {source} failed: {exc.message}\nHint: {exc.hint}")
                continue
        log.info("%s: restore drill of %s passed (restore %.1fs).", source, report.backup,
                 report.restore_seconds or 0.0)


def prune_after(d: Daemon, job: Job) -> PruneReport | None:
    """Prune the job's sources; a lock held elsewhere skips it, a failure is notified."""
    try:
        report = d.prune_fn(d.ctx, sources=list(job.sources))
    except LockHeld as exc:
        log.info("Not pruning after %s: %s", job.name, exc.message)
        return None
    except Exception as exc:
        if not isinstance(exc, PosterityError):
            log.exception("Prune after %s failed unexpectedly", job.name)
            exc = unexpected(exc)
        log.error("Prune after %s failed: %s", job.name, exc.message)
        d.notifier.event("failure", "prune failed", f"{exc.message}\n{exc.hint}")
        return None
    removed = sum(1 for b in report.backups if b.action == "removed")
    log.info("Pruned after %s: removed %d backup(s), freed %d bytes%s.", job.name, removed, report.deleted_bytes,
             f"; {len(report.locked_keys)} object(s) still under a bucket lock" if report.locked_keys else "")
    d.metrics.repository_size.set(report.stored_bytes)
    d.metrics.prune_deleted.inc(report.deleted_bytes)
    d.metrics.prune_locked.set(len(report.locked_keys))
    d.health.pruned(report)
    return report
