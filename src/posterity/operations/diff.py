"""What changed between two files backups, from their manifests alone.

Files manifests list every path with its type, size, mode, owner, mtime and sha256
(``facts["files"]``), so comparing two backups downloads two small JSON documents and no
payload. Each path lands in one or more of:

- ``added`` / ``removed``;
- ``modified`` — content, type, size or link target differ;
- ``mode`` — permission bits differ;
- ``owner`` — uid or gid differ;
- ``touched`` — only the mtime differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import kinds
from ..errors import BackupNotFound, ConfigError
from ..repository import Manifest
from .context import Context

CONTENT = ("type", "size", "sha256", "target")


@dataclass
class Change:
    path: str
    kinds: list[str]
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "changes": self.kinds,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class Diff:
    source: str
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if kind in c.kinds)

    def summary(self) -> dict[str, int]:
        return {
            k: self.count(k) for k in ("added", "removed", "modified", "mode", "owner", "touched")
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "from": self.old,
            "to": self.new,
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
        }


def _records(m: Manifest) -> dict[str, dict[str, Any]]:
    files = m.facts.get("files")
    if not isinstance(files, list):
        raise ConfigError(
            f"Backup {m.id} ({m.source}, {m.kind}) has no file list; diff compares files backups.",
            hint="Give two backups of a files source (`posterity list --source NAME`).",
        )
    return {str(r["path"]): r for r in files if isinstance(r, dict) and "path" in r}


def compare(old: Manifest, new: Manifest) -> Diff:
    a, b = _records(old), _records(new)
    out = Diff(new.source, old.id, new.id)
    for path in sorted(a.keys() | b.keys()):
        before, after = a.get(path), b.get(path)
        if before is None:
            out.changes.append(Change(path, ["added"], None, after))
            continue
        if after is None:
            out.changes.append(Change(path, ["removed"], before, None))
            continue
        kinds = []
        if any(before.get(k) != after.get(k) for k in CONTENT):
            kinds.append("modified")
        if before.get("mode") != after.get("mode"):
            kinds.append("mode")
        if (before.get("uid"), before.get("gid")) != (after.get("uid"), after.get("gid")):
            kinds.append("owner")
        if not kinds and before.get("mtime_ns") != after.get("mtime_ns"):
            kinds.append("touched")
        if kinds:
            out.changes.append(Change(path, kinds, before, after))
    return out


def _previous(ctx: Context, m: Manifest) -> Manifest:
    # By start time: ids have second resolution, so two backups within a second sort at random.
    earlier = [x for x in ctx.repo.manifests(m.source) if (x.started, x.id) < (m.started, m.id)]
    if not earlier:
        raise BackupNotFound(
            f"Backup {m.id} is the first backup of {m.source!r}; there is nothing to compare it with."
        )
    return max(earlier, key=lambda x: (x.started, x.id))


def _default_source(ctx: Context, source: str | None, refs: list[str]) -> str | None:
    if source or "latest" not in refs:
        return source
    files = sorted(n for n, c in ctx.config.sources.items() if kinds.of(c).file_list)
    if len(files) == 1:
        return files[0]
    raise ConfigError(
        "'latest' needs --source when several (or no) files sources are configured.",
        hint=f"Add --source NAME (files sources: {', '.join(files) or 'none'}).",
    )


def diff_backups(
    ctx: Context, ref1: str, ref2: str | None = None, source: str | None = None
) -> Diff:
    """Compare two backups (``ref2`` omitted: ``ref1`` with the backup before it)."""
    source = _default_source(ctx, source, [ref1, ref2 or ""])
    first = ctx.repo.find(ref1, source)
    if ref2 is None:
        return compare(_previous(ctx, first), first)
    second = ctx.repo.find(ref2, source)
    return compare(first, second)
