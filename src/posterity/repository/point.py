"""The restore point record: ``points/<point-id>.json``, one backup of every source taken together.

What a point means and how it is written and restored is ``operations.points``; this module is
only the record's format (write-once JSON, no secrets), shared by every reader (list, verify,
prune, restore) without importing the operations that use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import BackupNotFound, ManifestInvalid
from .layout import point_key

FORMAT = 1


@dataclass
class PointMember:
    source: str
    kind: str
    backup: str
    manifest: str
    consistency_marker: dict[str, Any] | None = None
    unchanged_from: str | None = None


@dataclass
class Point:
    id: str
    started_at: str
    finished_at: str
    host: str
    posterity_version: str
    backups: list[PointMember]
    tags: list[str] = field(default_factory=list)
    format: int = FORMAT

    @property
    def key(self) -> str:
        return point_key(self.id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode()

    def member(self, source: str) -> PointMember:
        for m in self.backups:
            if m.source == source:
                return m
        raise BackupNotFound(f"Restore point {self.id} holds no backup of {source!r}.")

    @classmethod
    def from_json(cls, data: bytes, key: str) -> Point:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise ValueError(
                    f"format {raw.get('format') if isinstance(raw, dict) else '?'!r}, expected {FORMAT}"
                )
            members = [PointMember(**b) for b in raw.pop("backups")]
            return cls(backups=members, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ManifestInvalid(f"The restore point {key} is malformed: {exc}.") from exc
