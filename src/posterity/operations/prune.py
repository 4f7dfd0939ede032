"""Prune: apply the retention policy, then remove what no kept backup needs.

Order of events, and why:
1. Take the repository lock ``prune`` (two hosts never prune together), then, per source,
   that source's backup lock: a source whose backup is running is skipped and reported —
   its in-flight backup may reference payloads of earlier backups, and its uncommitted
   payloads must not be mistaken for a killed backup's.
2. Read every manifest and decide keep/remove (``repository.retention``, a pure function).
   The newest backup of each source is always kept.
3. Compute the keys referenced by *kept* manifests — of every source — and never delete
   one of them (a files backup can reference an earlier backup's unchanged payloads).
4. Delete the manifests of removed backups first: from that moment the backup no longer
   exists, and a crash halfway leaves only unlisted payloads (step 5 of a later run).
   Then their payloads.
5. Remove payloads of backups that never committed (no manifest), once the backup id is
   older than ``[retention] uncommitted_grace``.
6. WAL the kept base backups no longer need (``wal_retention.wal_keys_needed``).
7. Old ``posterity-*`` files in the local staging folder.

Keys the store refuses to delete (403/AccessDenied: an R2 bucket-lock rule that has not
expired yet, or a token without delete permission) are reported, not errors; a backup
whose manifest cannot be deleted keeps its payloads. Every run writes an audit record.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config.durations import parse_duration
from ..errors import LockHeld, PosterityError, StorageAuthError
from ..repository import Manifest, Repository, layout
from ..repository.retention import Decision, Snapshot, decide, resolver
from ..repository.wal_retention import wal_keys_needed
from .context import Context

log = logging.getLogger(__name__)


@dataclass
class BackupVerdict:
    source: str
    id: str
    time: datetime
    tags: list[str]
    size: int
    keep: bool
    rule: str
    action: str  # keep | remove (dry run) | removed | locked

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.id,
            "time": self.time.isoformat(),
            "tags": self.tags,
            "size": self.size,
            "keep": self.keep,
            "rule": self.rule,
            "action": self.action,
        }


@dataclass
class Orphan:
    source: str
    id: str
    keys: list[str]
    size: int
    age_seconds: float
    action: str  # within grace | remove (dry run) | removed | locked | referenced

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "id": self.id, "keys": self.keys, "size": self.size,
                "age_seconds": round(self.age_seconds), "action": self.action}


@dataclass
class PruneReport:
    dry_run: bool
    backups: list[BackupVerdict] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    locked_keys: list[str] = field(default_factory=list)
    deleted_keys: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    wal_deleted: int = 0  # in a dry run: how many would be
    staging_removed: list[str] = field(default_factory=list)
    stored_bytes: int = 0  # bytes left under backups/ and wal/ after the run
    seconds: float = 0.0

    @property
    def removed(self) -> list[BackupVerdict]:
        return [b for b in self.backups if not b.keep]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "backups": [b.to_dict() for b in self.backups],
            "orphans": [o.to_dict() for o in self.orphans],
            "skipped_sources": self.skipped,
            "warnings": self.warnings,
            "locked_keys": self.locked_keys,
            "deleted_keys": len(self.deleted_keys),
            "deleted_bytes": self.deleted_bytes,
            "wal_deleted": self.wal_deleted,
            "staging_removed": self.staging_removed,
            "stored_bytes": self.stored_bytes,
            "seconds": round(self.seconds, 3),
        }


def referenced_keys(m: Manifest) -> set[str]:
    """Every payload key a manifest needs: its artifacts' keys (which may point into an
    earlier backup, e.g. unchanged files) and any backup key named anywhere in its facts."""
    keys = {a.key for a in m.artifacts}
    stack: list[Any] = [m.facts, *(a.facts for a in m.artifacts)]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, str) and v.startswith(layout.BACKUPS_PREFIX) and layout.parse_backup_key(v):
            keys.add(v)
    return keys


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _delete(repo: Repository, keys: list[str], report: PruneReport) -> list[str]:
    """Delete ``keys``; those the store refuses (bucket lock) go to ``report.locked_keys``."""
    if not keys:
        return []
    try:
        repo.forget(keys)
        return list(keys)
    except (StorageAuthError, PermissionError):
        pass
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM):
            raise
    deleted = []
    for k in keys:  # one by one, to tell the locked keys from the others
        try:
            repo.forget([k])
            deleted.append(k)
        except (StorageAuthError, PermissionError):
            report.locked_keys.append(k)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM):
                raise
            report.locked_keys.append(k)
    return deleted


def prune(
    ctx: Context,
    *,
    dry_run: bool = False,
    sources: Iterable[str] | None = None,
    now: datetime | None = None,
) -> PruneReport:
    repo = ctx.repo
    repo.descriptor()
    t0 = time.monotonic()
    report = PruneReport(dry_run=dry_run)
    wanted = set(sources or ())
    try:
        with ExitStack() as stack:
            if not dry_run:
                stack.enter_context(repo.lock("prune", "prune"))
            _prune(ctx, report, wanted, now or datetime.now(UTC), stack)
    except PosterityError as exc:
        if not dry_run:
            repo.audit("prune", "failed", {"sources": sorted(wanted) or "all", "error": str(exc)})
        raise
    report.seconds = time.monotonic() - t0
    if not dry_run:
        repo.audit("prune", "succeeded", {
            "sources": sorted(wanted) or "all",
            "removed": [f"{b.source}/{b.id}" for b in report.backups if b.action == "removed"],
            "kept": sum(1 for b in report.backups if b.keep),
            "orphans_removed": [f"{o.source}/{o.id}" for o in report.orphans if o.action == "removed"],
            "deleted_keys": len(report.deleted_keys),
            "deleted_bytes": report.deleted_bytes,
            "locked_keys": report.locked_keys,
            "skipped": report.skipped,
        })
    return report


def _prune(ctx: Context, report: PruneReport, wanted: set[str], now: datetime, stack: ExitStack) -> None:
    repo, cfg = ctx.repo, ctx.config
    grace = parse_duration(cfg.retention.uncommitted_grace)

    # One listing of backups/: every prefix, its objects, whether it has a manifest.
    inventory = repo.inventory()
    prefixes = inventory.backups
    manifest_keys = inventory.manifest_keys()

    manifests: dict[tuple[str, str], Manifest] = {}
    unreadable: dict[str, str] = {}

    for key, got in repo.read_manifests(manifest_keys):
        src, bid, _ = layout.parse_backup_key(key)  # type: ignore[misc]
        if isinstance(got, Manifest):
            manifests[(src, bid)] = got
        else:
            unreadable.setdefault(src, f"manifest {key} is unreadable ({got.message}); run `posterity verify`")

    all_sources = {s for s, _ in prefixes}
    selected = sorted((all_sources & wanted) if wanted else all_sources)
    for src in selected:
        if src in unreadable:
            report.skipped[src] = unreadable[src]
            continue
        _hold_source_lock(report, stack, repo, src, ctx.config.general.lock_ttl)

    active = [s for s in selected if s not in report.skipped]
    snaps = [
        Snapshot(m.id, m.source, _aware(m.started), frozenset(m.tags))
        for (src, _), m in manifests.items()
        if src in active
    ]
    decisions: list[Decision] = decide(snaps, resolver(cfg.retention))
    remove = {(d.snapshot.source, d.snapshot.id) for d in decisions if not d.keep}
    kept = [m for k, m in manifests.items() if k not in remove]
    referenced: set[str] = set()
    for m in kept:
        referenced |= referenced_keys(m)

    # Manifests of removed backups first; only a backup whose manifest is gone loses payloads.
    verdicts: dict[tuple[str, str], BackupVerdict] = {}
    for d in decisions:
        snap = d.snapshot
        m = manifests[(snap.source, snap.id)]
        action = "keep" if d.keep else ("remove" if report.dry_run else "removed")
        verdicts[(snap.source, snap.id)] = BackupVerdict(
            snap.source, snap.id, snap.time, sorted(snap.tags), m.size, d.keep, d.rule, action
        )
    report.backups = list(verdicts.values())
    if not report.dry_run:
        doomed = [layout.manifest_key(s, i) for s, i in sorted(remove)]
        gone = set(_delete(repo, doomed, report))
        for s, i in sorted(remove):
            key = layout.manifest_key(s, i)
            if key not in gone:
                verdicts[(s, i)].action = "locked"
                continue
            _account(report, [key], prefixes[(s, i)])
        payloads = [
            k for (s, i) in sorted(remove) if layout.manifest_key(s, i) in gone
            for k in sorted(prefixes[(s, i)]) if k != layout.manifest_key(s, i) and k not in referenced
        ]
        _account(report, _delete(repo, payloads, report), _sizes(prefixes))

    # Uncommitted backups: payloads with no manifest.
    for (s, i), objs in sorted(prefixes.items()):
        if s not in active or layout.manifest_key(s, i) in objs:
            continue
        age = now - layout.id_time(i)
        keys = sorted(k for k in objs if k not in referenced)
        size = sum(objs[k] for k in keys)
        if not keys:
            continue  # every payload is still used by a kept backup
        if age < grace:
            action = "within grace"
        elif report.dry_run:
            action = "remove"
        elif repo.is_committed(s, i):
            continue  # it committed after our listing (before we held its lock): not an orphan
        else:
            done = _delete(repo, keys, report)
            _account(report, done, objs)
            action = "removed" if len(done) == len(keys) else "locked"
        report.orphans.append(Orphan(s, i, keys, size, age.total_seconds(), action))

    # WAL no kept base backup needs. A backup whose manifest a bucket lock kept still exists,
    # so it counts as kept here.
    wal = repo.wal_objects()
    still_there = kept + [manifests[(v.source, v.id)] for v in report.backups if v.action == "locked"]
    needed = wal_keys_needed(still_there, sorted(wal)) if wal else None
    if needed is not None:
        stale = sorted(k for k in wal if k.count("/") >= 2 and k.split("/", 2)[1] in active and k not in needed)
        if report.dry_run:
            report.wal_deleted = len(stale)
        else:
            done = _delete(repo, stale, report)
            report.wal_deleted = len(done)
            _account(report, done, wal)

    if not report.dry_run:
        # File times are real times, whatever ``now`` the policy was evaluated at.
        report.staging_removed = _clean_staging(ctx.staging_dir, grace, datetime.now(UTC))
    deleted = set(report.deleted_keys)
    report.stored_bytes = sum(sz for k, sz in _sizes(prefixes).items() if k not in deleted) + sum(
        sz for k, sz in wal.items() if k not in deleted
    )


def _hold_source_lock(report: PruneReport, stack: ExitStack, repo: Repository, src: str, ttl: int) -> None:
    """Hold the source's backup lock for the rest of the run, or skip the source (with the
    reason) while a backup of it runs. A dry run takes no lock and only looks."""
    name = f"backup-{src}"
    if report.dry_run:
        if repo.lock_held(name):
            report.warnings.append(f"{src}: the lock {name} is held (a backup may be running); prune would skip it")
        return
    try:
        stack.enter_context(repo.lock(name, "prune", ttl=ttl))
    except LockHeld as exc:
        report.skipped[src] = exc.message


def _sizes(prefixes: dict[tuple[str, str], dict[str, int]]) -> dict[str, int]:
    return {k: sz for objs in prefixes.values() for k, sz in objs.items()}


def _account(report: PruneReport, keys: Iterable[str], sizes: dict[str, int]) -> None:
    for k in keys:
        report.deleted_keys.append(k)
        report.deleted_bytes += sizes.get(k, 0)


def _clean_staging(staging_dir: Path | None, older_than: timedelta, now: datetime) -> list[str]:
    """Remove ``posterity-*`` files a killed restore left in the staging folder."""
    folder = Path(staging_dir or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(folder.glob("posterity-*"))
    except OSError:
        return removed
    cutoff = (now - older_than).timestamp()
    for p in entries:
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < cutoff:
                os.unlink(p)
                removed.append(str(p))
        except OSError as exc:
            log.warning("Could not remove the staged file %s (%s).", p, exc)
    return removed
