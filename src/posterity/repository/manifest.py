"""Manifests: the plain-JSON commit record of one backup. No secrets, ever.

A manifest names every object of the backup with its size and sha256, the stage specs
that produced it, facts about the source (server version, sizes, row counts, consistency
markers) and the by-hand restore command.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ManifestInvalid

FORMAT = 1


@dataclass
class ArtifactRecord:
    name: str
    key: str
    kind: str
    size: int
    sha256: str
    raw_size: int
    stages: list[dict[str, Any]]
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    id: str
    source: str
    kind: str
    started_at: str
    finished_at: str
    posterity_version: str
    host: str
    artifacts: list[ArtifactRecord]
    facts: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    restore_by_hand: list[str] = field(default_factory=list)
    format: int = FORMAT
    key: str = ""  # where it was read from; not stored

    @property
    def size(self) -> int:
        return sum(a.size for a in self.artifacts)

    @property
    def raw_size(self) -> int:
        return sum(a.raw_size for a in self.artifacts)

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def finished(self) -> datetime:
        return datetime.fromisoformat(self.finished_at)

    def artifact(self, name: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise ManifestInvalid(f"Backup {self.id} has no artifact {name!r} (it has {', '.join(a.name for a in self.artifacts)}).")

    def artifacts_of_kind(self, kind: str) -> list[ArtifactRecord]:
        return [a for a in self.artifacts if a.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("key", None)
        return d

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, key: str = "") -> Manifest:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestInvalid(f"The manifest {key} is not valid JSON ({exc}).") from exc
        return cls.from_dict(raw, key)

    @classmethod
    def from_dict(cls, raw: Any, key: str = "") -> Manifest:
        where = key or "manifest"
        if not isinstance(raw, dict):
            raise ManifestInvalid(f"The manifest {where} is not a JSON object.")
        if raw.get("format") != FORMAT:
            raise ManifestInvalid(
                f"The manifest {where} has format {raw.get('format')!r}; this Posterity reads format {FORMAT}.",
                hint="Use the Posterity version that wrote it (posterity_version in the manifest).",
            )
        try:
            arts_raw = raw["artifacts"]
            if not isinstance(arts_raw, list):
                raise TypeError("artifacts must be a list")
            arts = []
            for a in arts_raw:
                rec = ArtifactRecord(**a)
                if not isinstance(rec.size, int) or not isinstance(rec.sha256, str) or len(rec.sha256) != 64:
                    raise TypeError(f"artifact {rec.name!r} has a bad size or sha256")
                if not isinstance(rec.key, str):
                    raise TypeError(f"artifact {rec.name!r} has a bad key")
                _check_types(rec, _ARTIFACT_TYPES, f"artifact {rec.name!r}")
                arts.append(rec)
            fields = {k: raw[k] for k in raw if k not in ("artifacts",)}
            m = cls(artifacts=arts, **fields)
            for name in ("id", "source", "kind", "started_at", "finished_at"):
                if not isinstance(getattr(m, name), str):
                    raise TypeError(f"{name} must be a string")
            _check_types(m, _MANIFEST_TYPES, "it")
            for name in ("started_at", "finished_at"):
                if datetime.fromisoformat(getattr(m, name)).tzinfo is None:
                    raise ValueError(f"{name} has no time zone")
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestInvalid(f"The manifest {where} is malformed: {exc}.") from exc
        m.key = key
        return m


# A hand-edited manifest with a wrong type must be refused here, not crash `list` later.
_ARTIFACT_TYPES: dict[str, Any] = {
    "name": str, "key": str, "kind": str, "size": int, "sha256": str, "raw_size": int,
    "stages": (list, dict), "facts": dict,
}
_MANIFEST_TYPES: dict[str, Any] = {
    "posterity_version": str, "host": str, "facts": dict, "tags": (list, str), "restore_by_hand": (list, str),
}


def _check_types(obj: Any, types: dict[str, Any], what: str) -> None:
    for name, want in types.items():
        value = getattr(obj, name)
        kind, item = want if isinstance(want, tuple) else (want, None)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise TypeError(f"{what}: {name} must be {'a non-negative integer' if kind is int else kind.__name__}")
        if item is not None and not all(isinstance(v, item) for v in value):
            raise TypeError(f"{what}: every item of {name} must be {item.__name__}")
