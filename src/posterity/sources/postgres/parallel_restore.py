"""Restore a split logical backup (schema archive + data archives, see ``parallel_dump``).

1. pre-data: the schema archive is decoded to a file in the staging folder (it holds no
   rows: kilobytes to a few MiB; ``pg_restore -j`` needs a seekable file) and
   ``pg_restore --section=pre-data`` creates the tables, still without indexes or constraints;
2. data: every data archive streams from the store, through verify → decrypt →
   decompress, straight into its own ``pg_restore --data-only`` (stdin, nothing staged);
   ``stream_limit(jobs)`` of them run at once, largest first, each loading from its first bytes.
   When an archive is in, the indexes, keys and triggers of the tables that are now wholly
   loaded are built in that load's slot (``post_data``: ``pg_restore -L`` on the staged schema
   archive; runs that share a table one after another, in the order claimed), while the other
   slots go on loading;
3. post-data: what is left (everything, if the plan is off) runs as
   ``pg_restore --jobs N`` on the staged schema archive.

Local disk: only the schema archive (and the short ``-L`` lists). Memory: ``stream_limit``
streams of one download window each, whatever ``--jobs`` is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import RestoreFailed
from ...pipeline.budget import stream_limit
from ...repository import Manifest, Repository
from .parallel_dump import DATA_KIND, SCHEMA_KIND, default_jobs
from .post_data import PostDataPlan, plan, write_list
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
    lists: list[Path] = []
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            repo.read_artifact(schema, fh, identities)
        t0 = time.monotonic()
        _run([*argv, "--section=pre-data", str(staged)], env)
        t1 = time.monotonic()
        post = _plan(staged, data)
        early = _EarlyRuns(post, argv, env, staged, lists, len(data)) if post is not None else None
        _load_all(repo, data, identities, [*argv, "--data-only"], env, jobs, tap, early)
        t2 = time.monotonic()
        if post is None:
            _run([*argv, "--section=post-data", f"--jobs={jobs}", str(staged)], env)
        elif rest := post.rest():
            listed = write_list(_new_list(folder, lists), rest)
            _run([*argv, f"--jobs={jobs}", f"--use-list={listed}", str(staged)], env)
        log.info("Restored in phases: schema %.1f s, data %.1f s (%d archives; %d index, key and trigger "
                 "entries built between loads), the rest of post-data %.1f s.",
                 t1 - t0, t2 - t1, len(data), len(post.done) if post else 0, time.monotonic() - t2)
    finally:
        staged.unlink(missing_ok=True)
        for p in lists:
            p.unlink(missing_ok=True)
    return {"bytes": sum(a.raw_size or 0 for a in [schema, *data]), "archives": 1 + len(data), "staged": schema.raw_size}


def _plan(staged: Path, data: list) -> PostDataPlan | None:
    archives: dict[str, list[str] | None] = {}
    for a in data:
        if a.facts.get("rest"):
            archives[a.name] = None
        elif a.facts.get("tables"):
            archives[a.name] = list(a.facts["tables"])
        else:
            return None  # a data archive that does not say what it holds: build everything at the end
    return plan(staged, archives)


def _new_list(folder: Path, lists: list[Path]) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, prefix="posterity-list-", suffix=".txt")
    os.close(fd)
    lists.append(Path(name))
    return lists[-1]


class _EarlyRuns:
    """Post-data runs between loads, each in the slot of the load that freed it. Batches run
    in the order they were claimed, except that one whose tables no earlier unfinished batch
    touches need not wait (a later batch that needs an earlier one's key shares its table)."""

    def __init__(self, post: PostDataPlan, argv: list[str], env: dict[str, str], staged: Path,
                 lists: list[Path], archives: int) -> None:
        self.post, self.argv, self.env, self.staged, self.lists = post, argv, env, staged, lists
        self.archives = archives
        self.cond = threading.Condition()
        self.loaded: set[str] = set()
        self.pending: list[tuple[object, frozenset[int]]] = []  # claimed, unfinished batches, in order

    def after_load(self, name: str, stopped: Callable[[], bool], started: Callable[[subprocess.Popen], None]) -> None:
        with self.cond:
            self.loaded.add(name)
            if len(self.loaded) == self.archives:
                return  # nothing loads any more: the final run builds the rest with -j N
            batch = self.post.ready(self.loaded)
            if not batch:
                return
            me = (object(), self.post.tables_of(batch))
            self.pending.append(me)
            while not stopped() and not self._clear(me):
                self.cond.wait(0.2)
            listed = write_list(_new_list(self.staged.parent, self.lists), batch)
        try:
            if not stopped():
                _run([*self.argv, f"--use-list={listed}", str(self.staged)], self.env, started=started,
                     stopped=stopped)
        finally:
            with self.cond:
                self.pending.remove(me)
                self.cond.notify_all()

    def _clear(self, me: tuple[object, frozenset[int]]) -> bool:
        for other in self.pending:
            if other is me:
                return True
            if not other[1].isdisjoint(me[1]):
                return False
        return True


def _load_all(repo, data: list, identities: list, argv: list[str], env: dict[str, str], jobs: int, tap,
              early: _EarlyRuns | None) -> None:
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
                if stop.is_set():  # another load failed before this process was registered
                    p.kill()

        try:
            stream_into(repo, art, identities, argv, env, tap, what=f"pg_restore of {art.name}",
                        started=started, stopped=stop.is_set)
            if early is not None:
                early.after_load(art.name, stop.is_set, started)
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


def _run(argv: list[str], env: dict[str, str], *, started: Callable[[subprocess.Popen], None] | None = None,
         stopped: Callable[[], bool] | None = None) -> None:
    """Run a pg_restore that reads a staged file; ``started`` sees the process (so a failing
    load elsewhere can kill it), ``stopped`` says that a kill was ours and is not reported again."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if started is not None:
            started(proc)
        rc = proc.wait()
        if rc != 0 and not (stopped is not None and stopped()):
            err.seek(0)
            lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
            raise RestoreFailed(f"pg_restore failed (exit {rc}): {' | '.join(lines[-5:])}")
