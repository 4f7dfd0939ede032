"""``posterity status``: is every source backed up, recently, and did the last try work?

Per source: the last successful backup (time, age) against its freshness target
(``max_age`` of the source, else ``[general] max_age``), the last failed backup and why
(from the audit records), and the trend of stored sizes with a size-anomaly flag.

States, worst first, and the exit code ``posterity status`` returns for them:
- ``failing``  (exit 13): a backup failed after the last successful one;
- ``archiving`` (exit 13): a postgres-physical source with ``wal = "archive"`` raises an
  archiving alert (failing longer than ``archive_alert_after``, a ``.ready`` backlog of
  ``ready_alert`` segments, pg_wal's disk past ``wal_disk_alert`` % or about to pass it) —
  see ``sources/postgres/archiving.py``; the alerts are in ``archiving.alerts``;
- ``stale``    (exit 12): the last success is older than max_age;
- ``never``    (exit 12): a configured source has no backup;
- ``ok``       (exit 0): fresh, or no max_age set.
A size anomaly (newest backup much smaller than the median of the ones before) is shown
and alerted on by the daemon but does not change the exit code: a real shrink is possible.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..config.durations import parse_duration
from .audit import read_audit
from .context import Context

EXIT_STALE = 12
EXIT_FAILING = 13
STATUS_EXIT_CODES = {0: "every source is fresh", EXIT_STALE: "a source is stale or never backed up",
                     EXIT_FAILING: "a source's last backup failed, or its WAL archiving raises an alert"}
FAILURE_LOOKBACK = timedelta(days=30)


def size_anomaly(sizes: list[int], ratio: float, window: int = 5) -> float | None:
    """The median of the ``window`` sizes before the newest when the newest is below
    ``ratio`` of it (the classic sign of an empty or truncated dump), else None."""
    if len(sizes) < 3:  # two earlier backups at least, or the median means little
        return None
    previous = sizes[-1 - window : -1]
    median = statistics.median(previous)
    return float(median) if sizes[-1] < ratio * median else None


@dataclass
class SourceStatus:
    source: str
    configured: bool
    state: str = "ok"
    max_age: str | None = None
    last_success: dict[str, Any] | None = None
    age_seconds: float | None = None
    last_failure: dict[str, Any] | None = None
    sizes: list[int] = field(default_factory=list)
    size_anomaly_median: float | None = None
    backups: int = 0
    last_drill: dict[str, Any] | None = None
    archiving: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "configured": self.configured,
            "state": self.state,
            "max_age": self.max_age,
            "last_success": self.last_success,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds),
            "last_failure": self.last_failure,
            "sizes": self.sizes,
            "size_anomaly": self.size_anomaly_median is not None,
            "size_anomaly_median": self.size_anomaly_median,
            "backups": self.backups,
            "last_drill": self.last_drill,
            "archiving": self.archiving,
        }


@dataclass
class StatusReport:
    sources: list[SourceStatus]
    time: datetime

    @property
    def exit_code(self) -> int:
        states = {s.state for s in self.sources}
        if states & {"failing", "archiving"}:
            return EXIT_FAILING
        if states & {"stale", "never"}:
            return EXIT_STALE
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time.isoformat(), "exit_code": self.exit_code,
                "sources": [s.to_dict() for s in self.sources]}


def max_age_of(ctx: Context, source: str) -> str | None:
    cfg = ctx.config.sources.get(source)
    own = getattr(cfg, "max_age", None) if cfg is not None else None
    return own or ctx.config.general.max_age


def status(ctx: Context, *, now: datetime | None = None, trend: int = 8) -> StatusReport:
    now = now or datetime.now(UTC)
    manifests = ctx.repo.manifests()
    failures = read_audit(ctx, since=now - FAILURE_LOOKBACK, op="backup")
    by_source: dict[str, list] = {}
    for m in manifests:
        by_source.setdefault(m.source, []).append(m)
    names = sorted(set(ctx.config.sources) | set(by_source))
    notify = ctx.config.notify
    out = []
    for name in names:
        st = SourceStatus(name, configured=name in ctx.config.sources, max_age=max_age_of(ctx, name))
        done = sorted(by_source.get(name, []), key=lambda m: (m.finished_at, m.id))
        st.backups = len(done)
        st.sizes = [m.size for m in done[-trend:]]
        st.size_anomaly_median = size_anomaly([m.size for m in done], notify.size_anomaly_ratio,
                                              notify.size_anomaly_window)
        last_ok: datetime | None = None
        if done:
            m = done[-1]
            last_ok = m.finished if m.finished.tzinfo else m.finished.replace(tzinfo=UTC)
            st.last_success = {"id": m.id, "time": m.finished_at, "size": m.size, "tags": m.tags}
            st.age_seconds = (now - last_ok).total_seconds()
        failed = [r for r in failures if r.get("source") == name and r.get("result") == "failed"]
        if failed:
            f = failed[-1]
            st.last_failure = {"time": f.get("time"), "backup": f.get("backup"), "error": f.get("error"),
                               "host": f.get("host")}
        if st.last_failure and (last_ok is None or datetime.fromisoformat(str(st.last_failure["time"])) > last_ok):
            st.state = "failing"
        elif last_ok is None:
            st.state = "never" if st.configured else "ok"
        elif st.max_age and st.age_seconds is not None and st.age_seconds > parse_duration(st.max_age).total_seconds():
            st.state = "stale"
        st.last_drill = _last_drill_summary(ctx, name)
        _archiving(ctx, name, st)
        out.append(st)
    return StatusReport(out, now)


def _archiving(ctx: Context, name: str, st: SourceStatus) -> None:
    """Archive-mode physical sources: ask the server whether archiving is about to hurt it."""
    cfg = ctx.config.sources.get(name)
    if cfg is None or getattr(cfg, "wal", None) != "archive" or not hasattr(cfg, "ready_alert"):
        return
    from ..errors import PosterityError
    from ..sources.postgres import archiving

    try:
        sample, alerts = archiving.check(cfg.dsn.get_secret_value(), cfg, ctx.state_dir, name)
    except PosterityError as exc:
        st.archiving = {"error": exc.message}
        return
    st.archiving = archiving.summary(sample, alerts)
    if alerts and st.state != "failing":
        st.state = "archiving"


def _last_drill_summary(ctx: Context, source: str) -> dict[str, Any] | None:
    """The newest restore drill of ``source``: when, whether it passed, and its RTO."""
    from .drill import last_drill

    report = last_drill(ctx, source)
    if report is None:
        return None
    return {
        "id": report.get("id"),
        "backup": report.get("backup"),
        "time": report.get("finished_at") or report.get("started_at"),
        "ok": bool(report.get("ok")),
        "restore_seconds": report.get("restore_seconds"),
        "error": report.get("error"),
    }
