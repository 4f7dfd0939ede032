"""Restore points: one backup of every configured source, taken together.

``posterity backup`` without source names backs up every source and then writes
``points/<point-id>.json`` (write-once) naming each source's backup and its consistency
marker (PostgreSQL: snapshot LSN and time; files: the content digest; Meilisearch: its last
task uid). The point is written only when every source succeeded: a point promises that
the whole platform can be put back to one moment, and a missing piece breaks the promise.
Successful backups of a failed run stay (they are ordinary backups).

A point holds no payload: prune must keep the manifests a kept point names (and, through
them, their payloads, see ``operations.unchanged``).

``restore_point`` restores each member to its target: PostgreSQL into ``--to-database``,
Meilisearch's indexes into its configured server (temporary indexes and an atomic swap;
existing indexes only with ``--replace``), files into ``--to`` or the source's
``restore_to``. What can be checked without restoring (arguments, file conflicts, that
every backup still exists) is checked first; then PostgreSQL, Meilisearch and files are
restored in that order (the first two clean up after themselves when they fail).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..errors import BackupNotFound, ConfigError, ObjectNotFound, PosterityError
from ..repository import Manifest, Repository, new_backup_id
from ..repository.layout import manifest_key
from ..repository.point import Point, PointMember
from .context import Context
from .progress import Progress
from .restore_results import PointRestoreResult, RestoreResult


def write_point(
    ctx: Context,
    manifests: list[Manifest],
    *,
    tags: list[str] | None = None,
    started: datetime | None = None,
) -> Point:
    """Write the point for backups of *every* configured source (write-once)."""
    configured = set(ctx.config.sources)
    covered = {m.source for m in manifests}
    if covered != configured or len(manifests) != len(covered):
        missing = ", ".join(sorted(configured - covered)) or "none"
        raise ConfigError(
            f"A restore point needs one backup of every configured source (missing: {missing})."
        )
    started = started or min(m.started for m in manifests)
    point = Point(
        id=new_backup_id(started),
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        host=socket.gethostname(),
        posterity_version=__version__,
        tags=list(tags or []),
        backups=[
            PointMember(
                source=m.source,
                kind=m.kind,
                backup=m.id,
                manifest=manifest_key(m.source, m.id),
                consistency_marker=m.facts.get("consistency_marker"),
                unchanged_from=m.facts.get("unchanged_from"),
            )
            for m in sorted(manifests, key=lambda m: m.source)
        ],
    )
    ctx.repo.write_point(point)
    ctx.repo.audit(
        "point",
        "succeeded",
        {"point": point.id, "backups": {m.source: m.backup for m in point.backups}},
    )
    return point


def list_points(repo: Repository) -> list[Point]:
    """Every restore point, oldest first."""
    out = [repo.read_point(key) for key in repo.point_keys()]
    out.sort(key=lambda p: (p.started_at, p.id))  # ids have second resolution
    return out


def find_point(repo: Repository, ref: str) -> Point:
    points = list_points(repo)
    if not points:
        raise BackupNotFound(
            "There is no restore point yet.",
            hint="Run `posterity backup` with no source names to take one.",
        )
    if ref == "latest":
        return points[-1]
    found = [p for p in points if p.id.startswith(ref)]
    if not found:
        raise BackupNotFound(
            f"No restore point {ref!r}.", hint="Run `posterity list --points` to see them."
        )
    if len(found) > 1:
        raise BackupNotFound(
            f"{ref!r} matches several restore points: {', '.join(p.id for p in found)}.",
            hint="Give more of the id.",
        )
    return found[0]


def marker_text(kind: str, marker: dict[str, Any] | None) -> str:
    """A consistency marker in a few words."""
    if not marker:
        return "-"
    if "lsn" in marker:
        return f"lsn {marker['lsn']}"
    if "files_digest" in marker:
        return f"digest {str(marker['files_digest']).removeprefix('sha256:')[:12]}…"
    if "task_uid" in marker or "last_task_uid" in marker:
        return f"task {marker.get('last_task_uid', marker.get('task_uid'))}"
    return ", ".join(f"{k} {v}" for k, v in marker.items() if k != "time")[:40] or "-"


@dataclass
class PointRestore:
    """The options of ``posterity restore --point`` by parameter name (``to_database``, ``to``,
    ``overwrite``, ``meili_replace``, ``identity_file``, …); each kind's restorer builds its
    request from those in its ``point_options``."""

    options: dict[str, Any] = field(default_factory=dict)


def restore_point(
    ctx: Context, ref: str, req: PointRestore, progress: Callable[[], Progress] | None = None
) -> PointRestoreResult:
    from ..errors import reworded
    from .restore import restore, restorers

    kinds = {k: r for k, r in restorers().items() if r.point_order is not None}
    point = find_point(ctx.repo, ref)
    # Check everything before restoring anything.
    for m in point.backups:
        if m.kind not in kinds:
            raise ConfigError(
                f"Restore point {point.id} holds a {m.kind} backup ({m.source}), which this version cannot restore.",
                hint=f"Restore the other sources one by one: posterity restore SOURCE BACKUP-ID (see `posterity show {m.backup}`).",
            )
        try:
            ctx.repo.read_manifest(m.manifest)
        except ObjectNotFound as exc:
            raise BackupNotFound(
                f"Restore point {point.id} names backup {m.backup} of {m.source}, which no longer exists."
            ) from exc
    order = sorted(point.backups, key=lambda m: (kinds[m.kind].point_order or 0, m.source))
    requests: dict[str, Any] = {}
    for m in order:
        if m.kind not in requests:
            members = [b for b in order if b.kind == m.kind]
            requests[m.kind] = kinds[m.kind].point_request(point.id, members, req.options)
    for m in point.backups:
        kinds[m.kind].point_check(ctx, m.source, m.backup, requests[m.kind])

    done: list[str] = []
    results: dict[str, RestoreResult] = {}
    for m in order:
        try:
            results[m.source] = restore(
                ctx, m.source, m.backup, requests[m.kind], progress=progress() if progress else None
            )
        except PosterityError as exc:
            before = f"restored {', '.join(done)}; " if done else "nothing was restored; "
            raise reworded(exc, f"Restore point {point.id}: {before}{m.source} failed: {exc.message}") from exc
        done.append(m.source)
    ctx.repo.audit("restore-point", "succeeded", {"point": point.id, "sources": done})
    return PointRestoreResult(point.id, results, [m.source for m in order])
