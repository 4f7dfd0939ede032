"""``posterity status``: read what the health evaluator needs, then ask it.

This module does the I/O — the repository's manifests, the failed backups of the audit
trail, the newest drill of each source, the archiving sample of ``wal = "archive"``
sources — and hands it to :func:`posterity.operations.health.evaluate`, the one evaluator
the daemon, its metrics and ``/healthz``, and the dashboard ask too. The states and exit
codes are described there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .. import kinds
from .audit import read_audit
from .context import Context
from .drill_report import DrillSummary
from .health import (
    EXIT_FAILING,
    EXIT_STALE,
    STATUS_EXIT_CODES,
    ArchivingFact,
    BackupFact,
    HealthSnapshot,
    SourceStatus,
    StatusReport,
    evaluate,
    size_anomaly,
)
from .health import max_age_of as _max_age_of

__all__ = ["EXIT_FAILING", "EXIT_STALE", "FAILURE_LOOKBACK", "STATUS_EXIT_CODES", "SourceStatus", "StatusReport",
           "max_age_of", "size_anomaly", "snapshot", "status"]

FAILURE_LOOKBACK = timedelta(days=30)


def max_age_of(ctx: Context, source: str) -> str | None:
    return _max_age_of(ctx.config, source)


def snapshot(ctx: Context, now: datetime) -> HealthSnapshot:
    """What the repository, the audit trail, the drills and the archiving servers say now."""
    backups: dict[str, list[BackupFact]] = {}
    for m in ctx.repo.manifests():
        backups.setdefault(m.source, []).append(BackupFact.of(m))
    failures = read_audit(ctx, since=now - FAILURE_LOOKBACK, op="backup")
    names = sorted(set(ctx.config.sources) | set(backups))
    drills = {name: _last_drill_summary(ctx, name) for name in names}
    archiving = {name: fact for name in names if (fact := _archiving(ctx, name)) is not None}
    return HealthSnapshot(backups, failures, drills, archiving)


def status(ctx: Context, *, now: datetime | None = None, trend: int = 8) -> StatusReport:
    now = now or datetime.now(UTC)
    return evaluate(ctx.config, snapshot(ctx, now), now, trend=trend)


def _archiving(ctx: Context, name: str) -> ArchivingFact | None:
    """Archive-mode physical sources: ask the server whether archiving is about to hurt it."""
    cfg = ctx.config.sources.get(name)
    if cfg is None or not kinds.archives_by_command(cfg):
        return None
    from ..errors import PosterityError
    from ..sources.postgres import archiving

    try:
        sample, alerts = archiving.check(cfg.dsn.get_secret_value(), cfg, ctx.state_dir, name)
    except PosterityError as exc:
        return ArchivingFact(error=exc.message)
    return ArchivingFact(summary=archiving.summary(sample, alerts), alerting=bool(alerts))


def _last_drill_summary(ctx: Context, source: str) -> DrillSummary | None:
    """The newest restore drill of ``source``: when, whether it passed, and its RTO."""
    from .drill import last_drill

    report = last_drill(ctx, source)
    return None if report is None else DrillSummary.of(report)
