"""Back up one source: dump → pipeline → payloads, then the manifest last.

Order of events, and why:
1. ``check()`` the source before taking the lock or writing anything (fail fast).
2. Take the per-source repository lock: two backups of one source never run at once.
3. Stream every artifact into its payload key (create-if-absent), waiting for the dump
   process after each stream ends, so a dump that fails halfway is never committed.
4. Write the manifest (create-if-absent). Only now does the backup exist.
On failure, payloads already written are removed (best effort); a killed process leaves
unlisted orphans that ``prune`` removes after a grace period.

Every backup runs under a ``CancelToken`` (``cancel.py``), a child of the calling thread's
token (a daemon job's): ``[general] backup_timeout`` cancels it with ``DeadlineExceeded``,
SIGTERM with ``Terminated``, the daemon's stop with ``Abandoned``. Cancelling kills the
artifact's producer (``Artifact.cancel``) and the stream raises the reason between chunks,
so the failure path above runs even when the dump was stopped or blocked.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..config.durations import parse_duration
from ..errors import DeadlineExceeded, PosterityError, SourceError, say_nothing_committed
from ..repository import ArtifactRecord, Manifest, new_backup_id
from ..repository.layout import payload_key
from ..repository.recipients import require_known as require_known_recipients
from ..sources import make_source
from . import cancel
from .context import Context
from .parallel_write import store_all
from .progress import NoProgress, Progress
from .unchanged import commit_if_unchanged

log = logging.getLogger(__name__)


@dataclass
class BackupResult:
    manifest: Manifest
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": m.id,
            "source": m.source,
            "kind": m.kind,
            "size": m.size,
            "raw_size": m.raw_size,
            "seconds": round(self.seconds, 3),
            "unchanged_from": m.facts.get("unchanged_from"),
            "artifacts": [{"name": a.name, "key": a.key, "size": a.size, "sha256": a.sha256} for a in m.artifacts],
        }


def backup_source(
    ctx: Context, name: str, *, tags: list[str] | None = None, progress: Progress | None = None, jobs: int | None = None
) -> BackupResult:
    token = cancel.CancelToken(parent=cancel.current())
    limit = ctx.config.general.backup_timeout
    token.deadline(parse_duration(limit).total_seconds(), lambda: DeadlineExceeded(
        f"The backup of {name} ran longer than its backup_timeout ({limit}) and was stopped; nothing was committed."))
    try:
        return _backup_source(ctx, name, token, tags=tags, progress=progress, jobs=jobs)
    finally:
        token.close()


def _backup_source(ctx: Context, name: str, token: cancel.CancelToken, *, tags: list[str] | None,
                   progress: Progress | None, jobs: int | None = None) -> BackupResult:
    progress = progress or NoProgress()
    cfg = ctx.config.source(name)
    source = make_source(name, cfg)
    jobs = _jobs(source, cfg, jobs)
    repo = ctx.repo
    repo.descriptor()  # fail with "not initialised" before touching the source
    try:
        require_known_recipients(repo, ctx.stages.recipients)  # never encrypt to a key the repository does not know
    except PosterityError as exc:
        repo.audit("backup", "failed", {"source": name, "backup": None, "error": str(exc)})
        raise
    source.bind(ctx.repo)
    t0 = time.monotonic()
    try:
        source.check()
    except PosterityError as exc:  # the commonest failure (source down) belongs in the audit trail too
        repo.audit("backup", "failed", {"source": name, "backup": None, "error": str(exc)})
        raise
    started = datetime.now(UTC)
    backup_id = new_backup_id(started)
    written: list[str] = []
    records: list[ArtifactRecord] = []
    committing = False
    dump = None
    try:
        with repo.lock(f"backup-{name}", "backup"):
            reused = commit_if_unchanged(ctx, source, name, backup_id, started, tags)
            if reused is not None:  # same content as the previous backup: no payload stored
                repo.audit("backup", "succeeded", {"source": name, "backup": backup_id, "unchanged_from": reused.facts["unchanged_from"]})
                return BackupResult(reused, time.monotonic() - t0)
            dump = source.dump()

            stages = ctx.stages
            if jobs > 1 and stages.zstd_threads == -1:
                # The streams already use the cores; zstd workers per stream (~20 MiB each) would
                # only add memory and contention.
                stages = dataclasses.replace(stages, zstd_threads=0)

            def store(art, progress=progress, one=True) -> ArtifactRecord:
                key = payload_key(name, backup_id, art.name)
                if one:
                    progress.start(f"{name}: {art.name}", None)
                written.append(key)
                unregister = token.on_cancel(art.cancel)
                try:
                    token.check()  # inside: a cancelled artifact is still aborted (its pg_dump ended)
                    size, sha, raw = repo.write_payload(
                        key, token.checked(art.stream), stages, expected_size=art.expected_size,
                        progress=progress.advance
                    )
                except BaseException:
                    art.abort()
                    raise
                finally:
                    unregister()
                    if one:
                        progress.stop()
                art.finish()
                token.check()
                return ArtifactRecord(
                    name=art.name,
                    key=key,
                    kind=art.kind,
                    size=size,
                    sha256=sha,
                    raw_size=raw,
                    stages=ctx.stages.specs(),
                    facts=art.facts,
                )

            if jobs > 1:  # artifacts stored concurrently (split pg_dump): see parallel_write
                progress.start(f"{name}: {jobs} jobs", None)
                try:
                    records = store_all(dump, jobs, lambda a: store(a, _LockedProgress(progress), False))
                finally:
                    progress.stop()
            else:
                for art in dump:
                    records.append(store(art))
            manifest = Manifest(
                id=backup_id,
                source=name,
                kind=cfg.kind,
                started_at=started.isoformat(),
                finished_at=datetime.now(UTC).isoformat(),
                posterity_version=__version__,
                host=socket.gethostname(),
                artifacts=records,
                facts=source.facts(),
                tags=list(tags or []),
            )
            manifest.restore_by_hand = source.by_hand(manifest)
            _test_pause("POSTERITY_TEST_PAUSE_BEFORE_COMMIT")
            token.check()
            committing = True
            repo.commit(manifest)
            _test_pause("POSTERITY_TEST_PAUSE_AFTER_COMMIT")
    except BaseException as caught:
        reason: BaseException = caught
        if token.cancelled and token.error is not None:
            reason = token.error  # the dump failed because we killed it: say why we did
        if dump is not None and hasattr(dump, "close"):
            dump.close()  # let the source release its connection and helpers now, not at exit
        # A commit that failed may still have landed (its reply lost): never delete the
        # payloads of a backup whose manifest may exist; prune removes true orphans.
        if written and not (committing and _manifest_may_exist(repo, name, backup_id)):
            repo.abandon(written)
        if isinstance(reason, SourceError) and dump is not None and not committing:
            # The dump had started and the source failed (between artifacts, in its final
            # stats): the user must read that no backup was recorded, as for a failed pg_dump.
            say_nothing_committed(reason)
        if isinstance(reason, PosterityError | KeyboardInterrupt):
            repo.audit("backup", "failed", {"source": name, "backup": backup_id, "error": str(reason)})
        if reason is not caught:
            raise reason from caught
        raise
    repo.audit("backup", "succeeded", {"source": name, "backup": backup_id, "size": manifest.size})
    return BackupResult(manifest, time.monotonic() - t0)


def _jobs(source, cfg, jobs: int | None) -> int:
    """Workers for a source whose dump can be stored in parallel (it has a ``jobs`` attribute)."""
    if not hasattr(source, "jobs"):
        return 1
    from ..sources.postgres.parallel_dump import default_jobs

    source.jobs = jobs or getattr(cfg, "jobs", None) or default_jobs()
    return source.jobs


class _LockedProgress:
    """Progress advanced from several workers at once."""

    lock = threading.Lock()

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def advance(self, n: int) -> None:
        with self.lock:
            self.inner.advance(n)


def _manifest_may_exist(repo, source: str, backup_id: str) -> bool:
    try:
        return bool(repo.is_committed(source, backup_id))
    except Exception:  # cannot tell: keep the payloads
        return True


def _test_pause(var: str) -> None:
    """Test-only hook: sleep ``$var`` seconds here, so the reliability suite can SIGKILL a
    backup at an exact point (tests/reliability/test_kill.py). Unset in real use."""
    seconds = os.environ.get(var)
    if seconds:
        print(f"{var}: pausing {seconds}s", file=sys.stderr, flush=True)
        time.sleep(float(seconds))
