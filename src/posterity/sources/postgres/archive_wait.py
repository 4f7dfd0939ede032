"""A base backup commits only when every WAL segment it needs is in THIS repository.

Two waits, both bounded by ``archive_wait`` (issue 11.2, issue 14):

1. **While pg_basebackup runs.** With ``--wal-method=none`` the server ends a base backup
   by waiting for its last WAL segment to be archived (``do_pg_backup_stop``), and it waits
   for ever: with a failing archive_command pg_basebackup never returns, the server logs
   "still waiting for all required WAL segments to be archived". ``BasebackupWatch`` polls
   ``pg_stat_progress_basebackup`` for our pg_basebackup (found by a unique
   application_name) and ``pg_stat_archiver``; when the phase "waiting for wal archiving"
   has lasted ``archive_wait`` seconds it ends the server's side (``pg_terminate_backend``
   on the walsender) and pg_basebackup, and records why, so the backup fails with
   ``WalNotArchived`` naming archiving — not a hang, not a bare pg_basebackup error.
2. **After pg_basebackup.** The server saying "archived" (``pg_stat_archiver``) proves
   nothing about this repository: ``archive_command = '/bin/true'``, or a push into another
   repository, also says "archived". ``wait_in_repository`` waits (within the same bound)
   until every segment from the backup's first to its last is complete (record and payload)
   in this repository's WAL archive of the source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ...errors import DumpFailed, PosterityError
from ...repository import walnames as wal
from ...repository.walarchive import WalArchive
from .tools import connect

log = logging.getLogger(__name__)

POLL = 0.5
WAITING_PHASE = "waiting for wal archiving"  # "… to finish" (basebackup_progress.c)


class WalNotArchived(DumpFailed):
    """The WAL a base backup needs did not reach this repository in time."""


def archiving_hint(source: str) -> str:
    return (
        "Nothing was committed. WAL archiving must store every segment in this repository: "
        f"archive_command = 'posterity wal push --source {source} %p' (with this repository's config), "
        "runnable by the PostgreSQL OS user. `posterity wal status` and the PostgreSQL log show why it "
        "fails; raise [sources.NAME] archive_wait if archiving is merely slow."
    )


def archiver_text(row: Any, failed_at_start: int | None) -> str:
    if row is None:
        return ""
    last_archived, failed_count, last_failed = row
    parts = [f"pg_stat_archiver: last archived {last_archived or 'none'}"]
    if failed_count and failed_at_start is not None and failed_count > failed_at_start:
        parts.append(f"{failed_count - failed_at_start} archive_command failure(s) during the backup, "
                     f"last for {last_failed}")
    elif last_failed:
        parts.append(f"last failure for {last_failed}")
    return "; ".join(parts)


class BasebackupWatch:
    """Bound the server's wait for WAL archiving at the end of a base backup."""

    def __init__(self, dsn: str, app_name: str, source: str, archive_wait: float, kill: Callable[[], None]) -> None:
        self.dsn = dsn
        self.app_name = app_name
        self.source = source
        self.archive_wait = archive_wait
        self._kill = kill
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="posterity-basebackup-watch", daemon=True)
        self.waiting_since: float | None = None
        self.failure: WalNotArchived | None = None
        self.archiver: Any = None
        self.failed_at_start: int | None = None

    def start(self) -> BasebackupWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)

    def end_server_side(self) -> None:
        """End this backup's walsender, if one is left: a pg_basebackup killed while the server
        waits for archiving (a deadline, SIGTERM) leaves it waiting for ever otherwise — the
        server notices a gone client only when it next writes to it."""
        try:
            with connect(self.dsn) as conn:
                conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where application_name = %s and pid <> pg_backend_pid()",
                    (self.app_name,),
                )
        except Exception as exc:  # best effort: the failure being reported matters more
            log.warning("Could not end the server's side of the base backup (%s): %s", self.app_name, exc)

    def deadline(self) -> float:
        """When the wait for this backup's WAL ends (counted from the server's own wait)."""
        return (self.waiting_since or time.monotonic()) + self.archive_wait

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.is_set():
                try:
                    if conn is None:
                        conn = connect(self.dsn)
                    self._poll(conn)
                except PosterityError as exc:  # the source failing is pg_basebackup's to report
                    log.debug("base backup watch: %s", exc.message)
                except Exception as exc:  # psycopg errors: retry with a new connection
                    log.debug("base backup watch: %s", exc)
                    if conn is not None:
                        conn.close()
                    conn = None
                if self.failure is not None:
                    return
                self._stop.wait(POLL)
        finally:
            if conn is not None:
                conn.close()

    def _poll(self, conn: Any) -> None:
        row = conn.execute(
            "select (select p.phase from pg_stat_progress_basebackup p join pg_stat_activity s using (pid) "
            "        where s.application_name = %s limit 1), "
            "(select p.pid from pg_stat_progress_basebackup p join pg_stat_activity s using (pid) "
            "        where s.application_name = %s limit 1), "
            "last_archived_wal, failed_count, last_failed_wal from pg_stat_archiver",
            (self.app_name, self.app_name),
        ).fetchone()
        if row is None:
            return
        phase, walsender, *archiver = row
        self.archiver = tuple(archiver)
        if self.failed_at_start is None:
            self.failed_at_start = archiver[1]
        if not (phase or "").startswith(WAITING_PHASE):
            return
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        if now - self.waiting_since < self.archive_wait:
            return
        self.failure = WalNotArchived(
            f"The server waited {self.archive_wait:g}s for the WAL this base backup needs to be archived, "
            f"in vain ({archiver_text(self.archiver, self.failed_at_start)}); pg_basebackup was stopped.",
            hint=archiving_hint(self.source),
        )
        try:  # end the server's side too: its walsender would otherwise wait for ever
            conn.execute("select pg_terminate_backend(%s)", (walsender,))
        except Exception as exc:
            log.warning("Could not end the server's side of the base backup (pid %s): %s", walsender, exc)
        self._kill()


def wait_in_repository(
    archive: WalArchive | None, first: str, last: str, seg_size: int, deadline: float, archiver: Callable[[], str]
) -> float:
    """Wait until every segment from ``first`` to ``last`` is complete in ``archive`` (the
    source's WAL archive); returns the seconds waited. Raises ``WalNotArchived`` at ``deadline``."""
    if archive is None:
        raise DumpFailed("A base backup needs the repository to check its WAL (internal: not bound).")
    tli = wal.parse_name(last).timeline
    start_tli = wal.parse_name(first).timeline
    lo = wal.segno_of(first, seg_size) if start_tli == tli else wal.segno_of(last, seg_size)
    missing = [wal.segment_name(tli, n, seg_size) for n in range(lo, wal.segno_of(last, seg_size) + 1)]
    t0 = time.monotonic()
    while True:
        missing = [s for s in missing if not archive.complete(s)]
        if not missing:
            return round(time.monotonic() - t0, 3)
        if time.monotonic() >= deadline:
            shown = missing[0] if len(missing) == 1 else f"{len(missing)} segments, {missing[0]} … {missing[-1]}"
            said = archiver()
            raise WalNotArchived(
                f"The base backup needs WAL {shown}, which did not reach this repository "
                f"({archive.location}, source {archive.source}) in time"
                + (f"; {said}" if said else "")
                + ". Nothing was committed.",
                hint=archiving_hint(archive.source),
            )
        time.sleep(0.2)


def archived_elsewhere(archive: WalArchive | None, last_archived: str | None) -> str | None:
    """The archive_command check by behaviour: the server's newest archived segment must be in
    this repository. Returns a warning, or None (in it, or nothing to judge yet)."""
    if archive is None or not last_archived or len(last_archived) != 24:
        return None
    source = archive.source
    try:
        wal.parse_name(last_archived)
        if archive.complete(last_archived):
            return None
    except (ValueError, PosterityError):
        return None
    return (
        f"the server reports {last_archived} archived, but this repository ({archive.location}) does not hold it "
        f"for source {source}: archive_command does not push here, so base backups will fail. "
        f"Set archive_command = 'posterity wal push --source {source} %p' with this repository's config."
    )
