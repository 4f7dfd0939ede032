"""Is WAL archiving about to take the database down?

When archive_command fails, PostgreSQL keeps every WAL segment (a ``.ready`` file each in
``pg_wal/archive_status``) and retries forever; ``pg_wal``'s disk fills, and at 100 % the
server stops. This module looks at the three signs, early:

- ``pg_stat_archiver``: archiving is failing (last failure after last success), and for how
  long — from the first sample that saw it failing, kept in the state folder;
- the oldest ``.ready`` file's age: an archive_command that exits above 125 (126: not
  executable by the postgres user, 127: not found) makes PostgreSQL's archiver exit FATAL
  *without counting a failure* in ``pg_stat_archiver`` — seen here — so a segment waiting
  longer than ``archive_alert_after`` is a failing archive whatever the statistics say;
- the ``.ready`` backlog: segments waiting to be archived (``pg_ls_archive_statusdir()`` with
  superuser or pg_monitor, else the local ``data_directory`` when this host can read it);
- ``pg_wal``'s file system: how full, how fast it fills (between two samples) and so the
  time left until it is full.

``sample()`` reads the facts; ``evaluate()`` turns a sample (and the previous one) into
alerts against the source's thresholds (``archive_alert_after``, ``ready_alert``,
``wal_disk_alert``, ``wal_disk_alert_within``). `posterity status`, `posterity doctor` and the
daemon's archiving watcher (with metrics) all use these two functions, so they agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...config.durations import parse_duration
from .tools import connect, describe, query_errors


@dataclass
class ArchiveSample:
    time: float  # unix seconds
    failing: bool = False
    failed_count: int = 0
    last_failed_wal: str | None = None
    last_failed_time: float | None = None
    last_archived_time: float | None = None
    failing_since: float | None = None  # first sample that saw it failing (or the last success)
    ready: int | None = None
    oldest_ready: float | None = None  # unix time of the oldest .ready file
    data_directory: str | None = None
    wal_disk_total: int | None = None
    wal_disk_free: int | None = None
    fill_rate: float | None = None  # bytes/s pg_wal's disk filled since the previous sample
    seconds_left: float | None = None  # until it is full at that rate (None: not filling)
    notes: list[str] = field(default_factory=list)

    @property
    def wal_disk_used_fraction(self) -> float | None:
        if not self.wal_disk_total:
            return None
        return 1 - (self.wal_disk_free or 0) / self.wal_disk_total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ArchiveAlert:
    kind: str  # "failing" | "backlog" | "disk"
    message: str
    hint: str


def sample(dsn: str, data_directory: str | Path | None = None, now: float | None = None) -> ArchiveSample:
    """Read the archiver's state, the .ready backlog and pg_wal's disk (SourceError if unreachable)."""
    import time

    s = ArchiveSample(time=now if now is not None else time.time())
    with connect(dsn) as conn, query_errors(describe(dsn), "the archiver's state"):
        row = conn.execute(
            "select failed_count, last_failed_wal, extract(epoch from last_failed_time)::float8, "
            "extract(epoch from last_archived_time)::float8, "
            "(select setting from pg_settings where name = 'data_directory') from pg_stat_archiver").fetchone()
        assert row is not None
        s.failed_count, s.last_failed_wal, s.last_failed_time, s.last_archived_time, setting_dir = row
        s.failed_count = int(s.failed_count or 0)
        s.failing = bool(s.last_failed_time and (s.last_archived_time is None
                                                 or s.last_failed_time > s.last_archived_time))
        s.data_directory = str(data_directory or setting_dir or "") or None
        try:
            one = conn.execute("select count(*), extract(epoch from min(modification))::float8 "
                               "from pg_ls_archive_statusdir() where name like '%.ready'").fetchone()
            s.ready, s.oldest_ready = (int(one[0]), one[1]) if one else (None, None)
        except Exception:  # no pg_monitor/superuser: the local folder below, if this host has it
            s.ready = None
    if s.data_directory:
        pg_wal = Path(s.data_directory) / "pg_wal"
        if s.ready is None:
            try:
                status_dir = pg_wal / "archive_status"
                ready = [status_dir / n for n in os.listdir(status_dir) if n.endswith(".ready")]
                s.ready = len(ready)
                times = [p.stat().st_mtime for p in ready if p.exists()]
                s.oldest_ready = min(times) if times else None
            except OSError as exc:
                s.notes.append(f"cannot count .ready files in {pg_wal / 'archive_status'}: {exc.strerror}")
        try:
            st = os.statvfs(pg_wal)
            s.wal_disk_total, s.wal_disk_free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        except OSError as exc:
            s.notes.append(f"cannot see the disk of {pg_wal} from this host: {exc.strerror}")
    else:
        s.notes.append("data_directory unknown (set it in the source, or grant pg_read_all_settings)")
    if s.ready is None and not s.notes:
        s.notes.append("cannot count .ready files (grant pg_monitor, or set data_directory on the server's host)")
    return s


def carry(s: ArchiveSample, previous: ArchiveSample | None) -> None:
    """Keep when the failing started across samples (pg_stat_archiver only has the last failure)."""
    if not s.failing:
        s.failing_since = None
    elif previous is not None and previous.failing and previous.failing_since:
        s.failing_since = previous.failing_since
    else:
        # The first sight: no later than the last failure, no earlier than the last success.
        s.failing_since = s.last_archived_time or s.last_failed_time


#: A fill rate over less than this is noise (one big file written by anything on that disk).
MIN_RATE_INTERVAL = 60.0


def fill_rate(s: ArchiveSample, previous: ArchiveSample | None) -> float | None:
    """Bytes per second pg_wal's disk filled between the two samples (None without two taken
    at least ``MIN_RATE_INTERVAL`` and at most six hours apart)."""
    if (previous is None or previous.wal_disk_free is None or s.wal_disk_free is None
            or s.time - previous.time < MIN_RATE_INTERVAL or s.time - previous.time > 6 * 3600):
        return None
    return (previous.wal_disk_free - s.wal_disk_free) / (s.time - previous.time)


def evaluate(s: ArchiveSample, previous: ArchiveSample | None, cfg: Any) -> list[ArchiveAlert]:
    alerts = []
    after = parse_duration(cfg.archive_alert_after).total_seconds()
    hint = ("Run `posterity doctor` (as root, on the database server) and read PostgreSQL's log for "
            "archive_command's error; WAL piles up in pg_wal until it is fixed.")
    waited = s.time - s.oldest_ready if s.oldest_ready is not None else 0.0
    if s.failing and s.failing_since is not None and s.time - s.failing_since >= after:
        alerts.append(ArchiveAlert(
            "failing", f"WAL archiving has failed for {_human(s.time - s.failing_since)} "
            f"({s.failed_count} failures; last: {s.last_failed_wal})", hint))
    elif waited >= after:
        alerts.append(ArchiveAlert(
            "failing", f"WAL archiving has failed for {_human(waited)}: the oldest segment waiting to be archived "
            f"has waited that long ({s.failed_count} failures counted; an archive_command that exits above 125, "
            "e.g. 126 when the postgres user cannot execute it, stops the archiver without counting one)", hint))
    if s.ready is not None and s.ready >= cfg.ready_alert:
        grew = previous is not None and previous.ready is not None and s.ready > previous.ready
        alerts.append(ArchiveAlert(
            "backlog", f"{s.ready} WAL segments wait to be archived{' (and growing)' if grew else ''}",
            "archive_command is failing or too slow; `posterity wal status` and `posterity doctor` show why."))
    used = s.wal_disk_used_fraction
    if used is not None and s.wal_disk_total and s.wal_disk_free is not None:
        limit = cfg.wal_disk_alert / 100
        rate = fill_rate(s, previous)
        left = f"; at the current rate full in {_human(s.wal_disk_free / rate)}" if rate and rate > 0 else ""
        within = parse_duration(cfg.wal_disk_alert_within).total_seconds()
        to_limit = (s.wal_disk_free - (1 - limit) * s.wal_disk_total) / rate if rate and rate > 0 else None
        if used >= limit or (to_limit is not None and to_limit <= within):
            alerts.append(ArchiveAlert(
                "disk", f"pg_wal's disk is {used:.0%} full (alert at {cfg.wal_disk_alert}%){left}",
                "When it is full PostgreSQL stops. Fix archiving first (the .ready backlog is WAL it cannot "
                "remove), then free space."))
    return alerts


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- the previous sample, kept in the state folder -----------------------------------------


def _state_file(state_dir: Path, source: str) -> Path:
    return state_dir / "archiving" / f"{source}.json"


def load_previous(state_dir: Path, source: str) -> ArchiveSample | None:
    try:
        data = json.loads(_state_file(state_dir, source).read_text())
        return ArchiveSample(**data)
    except (OSError, ValueError, TypeError):
        return None


def save(state_dir: Path, source: str, s: ArchiveSample) -> None:
    """Best effort: a status run by a user that cannot write the state folder still works."""
    path = _state_file(state_dir, source)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(s.to_dict()))
        os.replace(tmp, path)
    except OSError:
        pass


def check(dsn: str, cfg: Any, state_dir: Path, source: str) -> tuple[ArchiveSample, list[ArchiveAlert]]:
    """Sample, compare with the previous sample, remember this one; (sample, alerts)."""
    previous = load_previous(state_dir, source)
    s = sample(dsn, cfg.data_directory)
    carry(s, previous)
    s.fill_rate = fill_rate(s, previous)
    if s.fill_rate and s.fill_rate > 0 and s.wal_disk_free is not None:
        s.seconds_left = s.wal_disk_free / s.fill_rate
    alerts = evaluate(s, previous, cfg)
    # Keep the older baseline until a rate can be measured against it (status run every few
    # seconds must not reset it), but always record a change between failing and not.
    if previous is None or s.time - previous.time >= MIN_RATE_INTERVAL or previous.failing != s.failing:
        save(state_dir, source, s)
    return s, alerts


def summary(s: ArchiveSample, alerts: list[ArchiveAlert]) -> dict[str, Any]:
    used = s.wal_disk_used_fraction
    return {
        "failing": s.failing,
        "failing_seconds": round(s.time - s.failing_since) if s.failing and s.failing_since else None,
        "oldest_ready_seconds": None if s.oldest_ready is None else round(s.time - s.oldest_ready),
        "failed_count": s.failed_count,
        "last_failed_wal": s.last_failed_wal,
        "ready": s.ready,
        "wal_disk_used": None if used is None else round(used, 4),
        "wal_disk_free_bytes": s.wal_disk_free,
        "wal_disk_fill_rate": None if s.fill_rate is None else round(s.fill_rate, 1),
        "wal_disk_seconds_left": None if s.seconds_left is None else round(s.seconds_left),
        "at": datetime.fromtimestamp(s.time, UTC).isoformat(timespec="seconds"),
        "notes": s.notes,
        "alerts": [asdict(a) for a in alerts],
    }


__all__ = ["ArchiveAlert", "ArchiveSample", "carry", "check", "evaluate", "fill_rate",
           "load_previous", "sample", "save", "summary"]
