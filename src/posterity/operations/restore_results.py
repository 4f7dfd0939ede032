"""What a restore returns, one type per kind (and one for a restore point).

Each result is a dataclass whose fields are the facts the kind's restore code reports, in the
order it reports them. The restorer builds it with ``from_dict`` from what the source's restore
code returns (``sources/`` never import ``operations/``); a key the type does not know is a
programming error (``TypeError``), so a new fact cannot vanish from the JSON unnoticed.
``to_dict()`` gives the JSON ``posterity restore --json`` prints, byte for byte as before the
results were typed: the same keys in the same order, optional keys (``row_counts``, ``kept``,
``restart``, …: fields marked ``OPTIONAL``) only when they apply. Nested values that are JSON
facts (``row_counts``, ``roles``, one row per index, recovery ``settings``) stay dicts.
The CLI renders by type (``cli/restore_render.py``), never by guessing the kind from the keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

#: Field metadata: the key is left out of ``to_dict()`` when the value is None.
OPTIONAL = {"optional": True}

R = TypeVar("R", bound="_Result")


def _key(f: Any) -> str:
    return str(f.metadata.get("key", f.name))


@dataclass(frozen=True)
class _Result:
    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """The result from the dict the kind's restore code returns (every key must be known)."""
        names = {_key(f): f.name for f in fields(cls)}
        unknown = [k for k in data if k not in names]
        if unknown:
            raise TypeError(f"{cls.__name__} has no field for {', '.join(unknown)}")
        return cls(**{names[k]: v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("optional") and value is None:
                continue
            out[_key(f)] = value
        return out


@dataclass(frozen=True)
class PostgresRestoreResult(_Result):
    """A database restored (``database`` on ``server``), with ``row_counts`` when checked."""

    backup: str
    database: str
    server: str
    created: bool
    bytes: int | None
    jobs: int
    archives: int | None = field(default=None, metadata=OPTIONAL)  # a split backup: how many archives
    staged: int | None = field(default=None, metadata=OPTIONAL)  # … and the bytes of the staged schema
    kept: str | None = field(default=None, metadata=OPTIONAL)  # --clean: the previous database's new name
    roles: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)  # --with-roles: created, skipped
    row_counts: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)  # --check-counts
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FilesRestoreResult(_Result):
    """Files, folders and symlinks restored into ``target`` (only ``paths`` when given)."""

    backup: str
    source: str
    unchanged_from: str | None
    target: str
    paths: list[str]
    restored: int
    files: int
    dirs: int
    symlinks: int
    bytes: int
    overwritten: int
    owners: bool
    seconds: float

    def count(self, what: str) -> int:  # files, dirs, symlinks, bytes, overwritten
        return int(getattr(self, what) or 0)


@dataclass(frozen=True)
class MeilisearchIndexesResult(_Result):
    """Indexes restored into the live server through temporary indexes and one swap."""

    backup: str
    origin: str = field(metadata={"key": "from"})  # the backup's export or dump the documents came from
    swap_task: int | None
    indexes: list[dict[str, Any]]  # index, target, documents, primary_key, created
    warnings: list[str]


@dataclass(frozen=True)
class MeilisearchFileResult(_Result):
    """The backup's snapshot or dump written to ``path`` (and restart_command run, if set)."""

    backup: str
    what: str  # snapshot or dump
    path: str
    bytes: int
    meilisearch_version: str | None
    live_version: str | None
    expected_counts: dict[str, Any]
    counts_exact: bool
    steps: list[str]
    warnings: list[str]
    restart: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)  # restart_command's report


@dataclass(frozen=True)
class MeilisearchCountsResult(_Result):
    """The live document counts against the backup's (``--check-counts`` alone)."""

    backup: str
    counts_exact: bool
    indexes: list[dict[str, Any]]  # index, expected, live
    mismatches: list[dict[str, Any]]
    extra: list[str]


@dataclass(frozen=True)
class PitrRestoreResult(_Result):
    """A data directory restored from a base backup and WAL (started when asked).

    The first seven fields are the WAL plan's; those after ``started`` are filled only when
    the server was started (``query_error`` when its recovery facts could not be read, the
    four facts after it only when they could)."""

    backup: str
    recovery_timeline: int
    wal_first: str | None
    wal_last: str | None
    wal_segments: int
    newest_archived: str | None
    wal_tail: Any
    source: str
    target: str
    directory: str
    owner: str
    tar_members: int
    wal_bytes: int
    base_bytes: int | None
    settings: dict[str, str]
    started: bool
    port: int | None = field(default=None, metadata=OPTIONAL)
    socket_dir: str | None = field(default=None, metadata=OPTIONAL)
    log: str | None = field(default=None, metadata=OPTIONAL)
    state: str | None = field(default=None, metadata=OPTIONAL)  # paused, promoted, shut down
    stopped: str | None = field(default=None, metadata=OPTIONAL)
    last_transaction: str | None = field(default=None, metadata=OPTIONAL)
    new_timeline: int | None = field(default=None, metadata=OPTIONAL)
    query_error: str | None = field(default=None, metadata=OPTIONAL)
    recovery: RecoveryFacts | None = None  # printed flat, in its place (not under a key of its own)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PitrRestoreResult:
        keys = [f.name for f in fields(RecoveryFacts)]
        rest = {k: v for k, v in data.items() if k not in keys}
        given = {k: data[k] for k in keys if k in data}
        if given and len(given) != len(keys):
            raise TypeError(f"PitrRestoreResult: recovery facts {sorted(given)} are not all four")
        return super().from_dict({**rest, "recovery": RecoveryFacts(**given) if given else None})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        recovery = out.pop("recovery")
        if recovery is None:
            return out
        # the recovery facts sit where the source reported them: after the start facts, before seconds
        tail = {k: out.pop(k) for k in ("seconds", "notes")}
        return {**out, **asdict(recovery), **tail}

    def fact(self, key: str) -> Any:
        """A recovery fact of the started server (``timeline``, ``replay_lsn``, …), or None."""
        return None if self.recovery is None else getattr(self.recovery, key)


@dataclass(frozen=True)
class RecoveryFacts:
    """What the started copy said when asked (``pitr_start._query``); each may be None."""

    in_recovery: bool | None
    replay_lsn: str | None
    replay_time: str | None
    timeline: int | None


RestoreResult = (
    PostgresRestoreResult | FilesRestoreResult | MeilisearchIndexesResult | MeilisearchFileResult
    | MeilisearchCountsResult | PitrRestoreResult
)


@dataclass(frozen=True)
class PointRestoreResult:
    """Every member of a restore point, restored in ``order``."""

    point: str
    restored: dict[str, RestoreResult]  # source -> its kind's result
    order: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "restored": {s: r.to_dict() for s, r in self.restored.items()},
                "order": list(self.order)}
