"""Restore a split logical backup (schema archive + data archives, see ``parallel_dump``).

1. pre-data: the schema archive is decoded to a file in the staging folder (it holds no
   rows: kilobytes to a few MiB; ``pg_restore -j`` needs a seekable file) and
   ``pg_restore --section=pre-data`` creates the tables, still without indexes or constraints;
2. data: every data archive streams from the store, through verify → decrypt →
   decompress, straight into its own ``pg_restore --data-only`` (stdin, nothing staged);
   ``stream_limit(jobs)`` of them run at once, largest first, each loading from its first bytes;
3. post-data: ``pg_restore --section=post-data --jobs N`` on the staged schema archive builds
   the indexes, constraints and triggers in parallel.

Local disk: only the schema archive. Memory: ``stream_limit`` streams of one download
window each, whatever ``--jobs`` is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ...errors import RestoreFailed
from ...pipeline.budget import stream_limit
from ...repository import Manifest, Repository
from .parallel_dump import DATA_KIND, SCHEMA_KIND, default_jobs
from .restore_stream import stream_into

log = logging.getLogger(__name__)


def is_split(manifest: Manifest) -> bool:
    return bool(manifest.artifacts_of_kind(SCHEMA_KIND))


def schema_archive(manifest: Manifest):
    return manifest.artifacts_of_kind(SCHEMA_KIND)[0]


def restore_split(
    repo: Repository,
    manifest: Manifest,
    identities: list,
    argv: list[str],
    env: dict[str, str],
    *,
    jobs: int,
    staging_dir: Path | None,
    progress=None,
) -> dict[str, Any]:
    """Load ``manifest``'s split backup with ``argv`` (pg_restore and its target options)."""
    jobs = jobs or default_jobs()
    [schema] = manifest.artifacts_of_kind(SCHEMA_KIND)
    data = sorted(manifest.artifacts_of_kind(DATA_KIND), key=lambda a: -(a.raw_size or 0))
    tap = _SharedTap(progress)
    folder = Path(staging_dir or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix="posterity-schema-", suffix=".pgdump")
    staged = Path(name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            repo.read_artifact(schema, fh, identities)
        t0 = time.monotonic()
        _run([*argv, "--section=pre-data", str(staged)], env)
        t1 = time.monotonic()
        _load_all(repo, data, identities, [*argv, "--data-only"], env, jobs, tap)
        t2 = time.monotonic()
        _run([*argv, "--section=post-data", f"--jobs={jobs}", str(staged)], env)
        log.info("Restored in phases: schema %.1f s, data %.1f s (%d archives), indexes and constraints %.1f s.",
                 t1 - t0, t2 - t1, len(data), time.monotonic() - t2)
    finally:
        staged.unlink(missing_ok=True)
    return {"bytes": sum(a.raw_size or 0 for a in [schema, *data]), "archives": 1 + len(data), "staged": schema.raw_size}


def _load_all(repo, data: list, identities: list, argv: list[str], env: dict[str, str], jobs: int, tap) -> None:
    """Stream every data archive into its own pg_restore, ``stream_limit(jobs)`` at once."""
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()  # the first failure: the other loads are killed, not waited out
    procs: dict[int, subprocess.Popen] = {}
    lock = threading.Lock()
    first: list[BaseException] = []

    def load(art) -> None:
        if stop.is_set():
            return
        proc: subprocess.Popen | None = None

        def started(p: subprocess.Popen) -> None:
            nonlocal proc
            proc = p
            with lock:
                procs[id(art)] = p

        try:
            stream_into(repo, art, identities, argv, env, tap, what=f"pg_restore of {art.name}",
                        started=started, stopped=stop.is_set)
        except BaseException as exc:
            with lock:
                if not stop.is_set():  # the root cause; the loads killed below fail after it
                    stop.set()
                    first.append(exc)
                    for other in procs.values():
                        if other is not proc and other.poll() is None:
                            other.kill()
            raise
        finally:
            with lock:
                procs.pop(id(art), None)

    with ThreadPoolExecutor(max_workers=stream_limit(jobs), thread_name_prefix="posterity-load") as pool:
        futures = [pool.submit(load, art) for art in data]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if first or errors:
        raise (first or errors)[0]


class _SharedTap:
    def __init__(self, progress) -> None:
        self.progress = progress
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        if self.progress:
            with self.lock:
                self.progress(n)


def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise RestoreFailed(f"pg_restore failed (exit {proc.returncode}): {' | '.join(lines[-5:])}")
