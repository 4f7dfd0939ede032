"""What a restore returns, one type per kind (and one for a restore point).

Each result names the fields a reader (the CLI, the web pages, a test) uses; ``to_dict()``
gives the JSON ``posterity restore --json`` prints, exactly as the kind's restore code
reports it (``data``: optional keys such as ``row_counts``, ``kept`` or ``restart`` appear
only when they apply). The CLI renders by type (``cli/restore_render.py``), never by
guessing the kind from the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class _Result:
    data: dict[str, Any] = field(repr=False)

    @property
    def backup(self) -> str:
        return str(self.data["backup"])

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings") or [])

    @property
    def notes(self) -> list[str]:
        return list(self.data.get("notes") or [])

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class PostgresRestoreResult(_Result):
    """A database restored (``database`` on ``server``), with ``row_counts`` when checked."""

    @property
    def database(self) -> str:
        return str(self.data["database"])

    @property
    def server(self) -> str:
        return str(self.data["server"])

    @property
    def bytes(self) -> int | None:
        return self.data.get("bytes")

    @property
    def jobs(self) -> int:
        return int(self.data["jobs"])

    @property
    def seconds(self) -> float:
        return float(self.data["seconds"])

    @property
    def row_counts(self) -> dict[str, Any] | None:
        return self.data.get("row_counts")


@dataclass(frozen=True)
class FilesRestoreResult(_Result):
    """Files, folders and symlinks restored into ``target`` (only ``paths`` when given)."""

    @property
    def target(self) -> str:
        return str(self.data["target"])

    def count(self, what: str) -> int:  # files, dirs, symlinks, bytes, overwritten
        return int(self.data.get(what) or 0)

    @property
    def paths(self) -> list[str]:
        return list(self.data.get("paths") or [])

    @property
    def owners(self) -> bool:
        return bool(self.data.get("owners"))

    @property
    def seconds(self) -> float:
        return float(self.data["seconds"])


@dataclass(frozen=True)
class MeilisearchIndexesResult(_Result):
    """Indexes restored into the live server through temporary indexes and one swap."""

    @property
    def indexes(self) -> list[dict[str, Any]]:
        return list(self.data["indexes"])


@dataclass(frozen=True)
class MeilisearchFileResult(_Result):
    """The backup's snapshot or dump written to ``path`` (and restart_command run, if set)."""

    what: str = "snapshot"

    @property
    def path(self) -> str:
        return str(self.data["path"])

    @property
    def restart(self) -> dict[str, Any] | None:
        return self.data.get("restart")


@dataclass(frozen=True)
class MeilisearchCountsResult(_Result):
    """The live document counts against the backup's (``--check-counts`` alone)."""

    @property
    def indexes(self) -> list[dict[str, Any]]:
        return list(self.data["indexes"])

    @property
    def mismatches(self) -> list[dict[str, Any]]:
        return list(self.data["mismatches"])


@dataclass(frozen=True)
class PitrRestoreResult(_Result):
    """A data directory restored from a base backup and WAL (started when asked)."""

    @property
    def directory(self) -> str:
        return str(self.data["directory"])

    @property
    def target(self) -> str:
        return str(self.data["target"])

    @property
    def started(self) -> bool:
        return bool(self.data["started"])


@dataclass(frozen=True)
class PointRestoreResult:
    """Every member of a restore point, restored in ``order``."""

    point: str
    restored: dict[str, Any]  # source -> its kind's result
    order: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "restored": {s: r.to_dict() for s, r in self.restored.items()},
                "order": list(self.order)}
