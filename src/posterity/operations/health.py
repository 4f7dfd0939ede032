"""The one health evaluator: "is this source backed up, recently, and did the last try work?"

``evaluate`` is a pure function over a :class:`HealthSnapshot` (what the repository holds,
the failed backups of the audit trail, the newest drill and the archiving sample of each
source — all read beforehand by the caller) and ``now``. It does no I/O, so every surface
asks it with its own snapshot and they can never disagree:

- ``posterity status`` and the dashboard (``operations/status.py`` reads the repository,
  the audit trail, the drills and the archiving servers, then calls ``evaluate``);
- the daemon's freshness check, the ``posterity_source_stale`` / ``posterity_source_state``
  metrics and ``/healthz?sources`` (``scheduler/health.py`` keeps a snapshot seeded from the
  repository and updated by each run, then calls ``evaluate``).

States, worst first, and the exit code ``posterity status`` returns for them:
- ``failing``  (exit 13): a backup failed after the last successful one;
- ``archiving`` (exit 13): a postgres-physical source with ``wal = "archive"`` raises an
  archiving alert (see ``sources/postgres/archiving.py``);
- ``stale``    (exit 12): the last success is older than max_age;
- ``never``    (exit 12): a configured source has no backup;
- ``ok``       (exit 0): fresh, or no max_age set.
A size anomaly (newest backup much smaller than the median of the ones before) is shown
and alerted on by the daemon but does not change the exit code: a real shrink is possible.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..config.durations import parse_duration
from ..config.schema import Config
from .drill_report import DrillSummary

EXIT_STALE = 12
EXIT_FAILING = 13
STATUS_EXIT_CODES = {0: "every source is fresh", EXIT_STALE: "a source is stale or never backed up",
                     EXIT_FAILING: "a source's last backup failed, or its WAL archiving raises an alert"}
STATES = ("ok", "never", "stale", "archiving", "failing")


def size_anomaly(sizes: list[int], ratio: float, window: int = 5) -> float | None:
    """The median of the ``window`` sizes before the newest when the newest is below
    ``ratio`` of it (the classic sign of an empty or truncated dump), else None."""
    if len(sizes) < 3:  # two earlier backups at least, or the median means little
        return None
    previous = sizes[-1 - window : -1]
    median = statistics.median(previous)
    return float(median) if sizes[-1] < ratio * median else None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BackupFact:
    """One committed backup, as much of its manifest as health needs."""

    id: str
    source: str
    finished: datetime
    finished_at: str
    size: int
    tags: tuple[str, ...] = ()

    @classmethod
    def of(cls, manifest: Any) -> BackupFact:
        return cls(manifest.id, manifest.source, _aware(manifest.finished), manifest.finished_at, manifest.size,
                   tuple(manifest.tags))


@dataclass(frozen=True)
class ArchivingFact:
    """The archiving sample of a ``wal = "archive"`` source: its summary and whether it alerts,
    or the error that kept it from being read."""

    summary: dict[str, Any] | None = None  # sources.postgres.archiving.summary(): JSON facts, as sampled
    alerting: bool = False
    error: str | None = None

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list((self.summary or {}).get("alerts") or [])

    def to_dict(self) -> dict[str, Any] | None:
        """What ``status --json`` prints under ``archiving``: the error, else the summary."""
        return {"error": self.error} if self.error is not None else self.summary


@dataclass
class HealthSnapshot:
    """Everything ``evaluate`` looks at, read beforehand.

    ``failures`` are audit records (``op = "backup"``, any result: only ``failed`` ones
    count), oldest first; ``drills`` the newest drill summary per source.
    """

    backups: Mapping[str, Sequence[BackupFact]]
    failures: Sequence[Mapping[str, Any]] = ()
    drills: Mapping[str, DrillSummary | None] = field(default_factory=dict)
    archiving: Mapping[str, ArchivingFact] = field(default_factory=dict)


@dataclass(frozen=True)
class LastSuccess:
    """The newest committed backup of a source, as status reports it."""

    id: str
    time: str  # the manifest's finished_at (ISO 8601)
    size: int
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "size": self.size, "tags": list(self.tags)}


@dataclass(frozen=True)
class LastFailure:
    """The newest failed backup of a source, from the audit records."""

    time: str | None
    backup: str | None
    error: str | None
    host: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "backup": self.backup, "error": self.error, "host": self.host}


@dataclass
class SourceStatus:
    source: str
    configured: bool
    state: str = "ok"
    max_age: str | None = None
    last_success: LastSuccess | None = None
    age_seconds: float | None = None
    last_failure: LastFailure | None = None
    sizes: list[int] = field(default_factory=list)
    size_anomaly_median: float | None = None
    backups: int = 0
    last_drill: DrillSummary | None = None
    archiving: ArchivingFact | None = None
    stale: bool = False  # never backed up (configured), or older than max_age — whatever else is wrong

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "configured": self.configured,
            "state": self.state,
            "max_age": self.max_age,
            "last_success": self.last_success.to_dict() if self.last_success else None,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds),
            "last_failure": self.last_failure.to_dict() if self.last_failure else None,
            "sizes": self.sizes,
            "size_anomaly": self.size_anomaly_median is not None,
            "size_anomaly_median": self.size_anomaly_median,
            "backups": self.backups,
            "last_drill": None if self.last_drill is None else self.last_drill.to_dict(),
            "archiving": None if self.archiving is None else self.archiving.to_dict(),
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

    def by_source(self) -> dict[str, SourceStatus]:
        return {s.source: s for s in self.sources}

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time.isoformat(), "exit_code": self.exit_code,
                "sources": [s.to_dict() for s in self.sources]}


def max_age_of(config: Config, source: str) -> str | None:
    cfg = config.sources.get(source)
    own = getattr(cfg, "max_age", None) if cfg is not None else None
    return own or config.general.max_age


def evaluate(config: Config, snap: HealthSnapshot, now: datetime, *, trend: int = 8) -> StatusReport:
    """Every configured source, and every source with backups, judged at ``now``."""
    names = sorted(set(config.sources) | {n for n, b in snap.backups.items() if b})
    return StatusReport([_source(config, snap, name, now, trend) for name in names], now)


def _source(config: Config, snap: HealthSnapshot, name: str, now: datetime, trend: int) -> SourceStatus:
    notify = config.notify
    st = SourceStatus(name, configured=name in config.sources, max_age=max_age_of(config, name))
    done = sorted(snap.backups.get(name, ()), key=lambda b: (b.finished_at, b.id))
    st.backups = len(done)
    st.sizes = [b.size for b in done[-trend:]]
    st.size_anomaly_median = size_anomaly([b.size for b in done], notify.size_anomaly_ratio,
                                          notify.size_anomaly_window)
    last_ok: datetime | None = None
    if done:
        b = done[-1]
        last_ok = b.finished
        st.last_success = LastSuccess(b.id, b.finished_at, b.size, list(b.tags))
        st.age_seconds = (now - last_ok).total_seconds()
    failed = [r for r in snap.failures if r.get("source") == name and r.get("result") == "failed"]
    if failed:
        f = failed[-1]
        st.last_failure = LastFailure(f.get("time"), f.get("backup"), f.get("error"), f.get("host"))
    too_old = bool(st.max_age and st.age_seconds is not None
                   and st.age_seconds > parse_duration(st.max_age).total_seconds())
    st.stale = (last_ok is None and st.configured) or too_old
    if st.last_failure and (last_ok is None or _aware(datetime.fromisoformat(str(st.last_failure.time))) > last_ok):
        st.state = "failing"
    elif last_ok is None:
        st.state = "never" if st.configured else "ok"
    elif too_old:
        st.state = "stale"
    st.last_drill = snap.drills.get(name)
    arch = snap.archiving.get(name)
    if arch is not None:
        st.archiving = arch
        if arch.alerting and st.state != "failing":
            st.state = "archiving"
    return st
