"""What ``posterity wal status`` returns (``wal_status.py``): typed, and ``to_dict()`` is what
``--json`` prints and the dashboard reads (keys left out exactly where they were before)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ArchiverState:
    """The server's pg_stat_archiver, judged against this repository (``reachable`` False: the
    server could not be asked, ``error`` says why)."""

    reachable: bool
    error: str | None = None
    archived_count: int | None = None
    last_archived_wal: str | None = None
    last_archived_time: str | None = None
    failed_count: int | None = None
    last_failed_wal: str | None = None
    last_failed_time: str | None = None
    current_wal: str | None = None
    failing: bool = False  # the last attempt failed
    lag_known: bool = False  # the server's current segment could be compared (else no lag_segments)
    lag_segments: int | None = None  # None (known): the repository holds no segment of its timeline
    trailing_gap: WalGap | None = None
    lag_seconds: float | None = None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if not self.reachable:
            return {"reachable": False, "error": self.error}
        out: dict[str, Any] = {
            "reachable": True, "archived_count": self.archived_count, "last_archived_wal": self.last_archived_wal,
            "last_archived_time": self.last_archived_time, "failed_count": self.failed_count,
            "last_failed_wal": self.last_failed_wal, "last_failed_time": self.last_failed_time,
            "current_wal": self.current_wal, "failing": self.failing,
        }
        if self.lag_known:
            out["lag_segments"] = self.lag_segments
        if self.trailing_gap is not None:
            out["trailing_gap"] = self.trailing_gap.to_dict()
        if self.lag_seconds is not None:
            out["lag_seconds"] = self.lag_seconds
        if self.warning is not None:
            out["warning"] = self.warning
        return out


@dataclass
class StreamState:
    """Streaming mode: the replication slot (``slot_state``: the server's row, None when the slot
    does not exist, ``{"error": …}`` when it could not be read), the streamer's own state file,
    its local backlog and the newest stored snapshot of the open segment."""

    slot: str
    interval_seconds: float
    slot_state: dict[str, Any] | None = None
    streamer: dict[str, Any] | None = None
    local_backlog: int | None = None  # None: the folder cannot be read
    newest_snapshot: str | None = None
    newest_snapshot_at: str | None = None
    newest_snapshot_age_seconds: float | None = None
    failing_reasons: list[str] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return bool(self.failing_reasons)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"slot": self.slot, "interval_seconds": self.interval_seconds,
                               "slot_state": self.slot_state, "streamer": self.streamer,
                               "local_backlog": self.local_backlog}
        if self.newest_snapshot is not None:
            out["newest_snapshot"] = self.newest_snapshot
            if self.newest_snapshot_at is not None:
                out["newest_snapshot_at"] = self.newest_snapshot_at
                out["newest_snapshot_age_seconds"] = self.newest_snapshot_age_seconds
        out["failing"] = self.failing
        out["failing_reasons"] = self.failing_reasons
        return out


@dataclass
class WalGap:
    """Segments missing from the archive on one timeline. ``trailing``: the server counts WAL
    up to ``last`` archived, but this repository holds nothing after ``first`` (or nothing)."""

    timeline: int
    missing: int | None
    first: str | None
    last: str
    trailing: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"timeline": self.timeline, "missing": self.missing, "first": self.first,
                               "last": self.last}
        if self.trailing:
            out["trailing"] = True
        return out


@dataclass
class TimelineStatus:
    """One archived timeline: its segments (``first`` … ``newest`` when it has any), its base
    backups, and where it branched (when the history file can be read here)."""

    timeline: int
    segments: int
    partial: int
    history: bool
    bytes: int
    first: str | None = None
    newest: str | None = None
    newest_archived_at: str | None = None
    base_backups: int | None = None
    branched_from: int | None = None
    branched_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"timeline": self.timeline, "segments": self.segments, "partial": self.partial,
                               "history": self.history, "bytes": self.bytes}
        if self.segments:
            out.update(first=self.first, newest=self.newest, newest_archived_at=self.newest_archived_at)
        if self.base_backups is not None:
            out["base_backups"] = self.base_backups
        if self.branched_from is not None:
            out.update(branched_from=self.branched_from, branched_at=self.branched_at)
        return out


@dataclass
class WalStatus:
    """The WAL archive of one source, the server's archiver, and (streaming mode) the streamer."""

    source: str
    location: str
    wal_method: str
    base_backups: int
    timelines: list[TimelineStatus] = field(default_factory=list)
    gaps: list[WalGap] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # records without their payload
    newest: str | None = None
    newest_archived_at: str | None = None
    newest_age_seconds: float | None = None  # None: no archived time known (left out of the JSON)
    server: ArchiverState = field(default_factory=lambda: ArchiverState(reachable=False))
    stream: StreamState | None = None
    counts_ready_files: bool = False  # a data_directory is configured (else ready_files is left out)
    ready_files: int | None = None  # .ready files waiting in pg_wal/archive_status (None: unreadable)

    @property
    def failing(self) -> bool:
        """A gap, the server's archiver failing now, or the streamer failing: exit 1."""
        return bool(self.gaps or self.server.failing or (self.stream is not None and self.stream.failing))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source, "location": self.location,
            "timelines": [t.to_dict() for t in self.timelines], "gaps": [g.to_dict() for g in self.gaps],
            "incomplete": self.incomplete, "base_backups": self.base_backups,
            "newest": self.newest, "newest_archived_at": self.newest_archived_at,
        }
        if self.newest_age_seconds is not None:
            out["newest_age_seconds"] = self.newest_age_seconds
        out["server"] = self.server.to_dict()
        out["wal_method"] = self.wal_method
        if self.stream is not None:
            out["stream"] = self.stream.to_dict()
        if self.counts_ready_files:
            out["ready_files"] = self.ready_files
        return out
