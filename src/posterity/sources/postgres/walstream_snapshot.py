"""Storing what pg_receivewal writes (``wal = "stream"``): completed files are pushed like
``wal push`` does and then removed from the spool folder; the segment being written is
stored as a snapshot of its written part (``<segment>.<length>.stream``, a new create-only
name each time) and the superseded snapshot forgotten. Everything goes through the
source's ``WalArchive`` (``Repository.wal(source)``): no store key is spelled here.

A mixin of ``WalStreamer`` (``walstream.py``), which owns the state it updates.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import PosterityError, StorageError
from ...repository import walnames as wal
from ...repository.walarchive import WalArchive

log = logging.getLogger("posterity.sources.postgres.walstream")

_COMPLETE = re.compile(r"^([0-9A-F]{24}|[0-9A-F]{8}\.history)$")
_PARTIAL = re.compile(r"^([0-9A-F]{24})\.partial$")
SETTLE_NS = 100_000_000  # a partial file written less than 0.1 s ago is read again next turn


class SnapshotSweeper:
    archive: WalArchive
    source: str
    stages: Any
    directory: Path
    state: Any
    sysid: str | None
    _seen: dict[str, tuple[int, int]]
    _snapshot: dict[str, tuple[int, str]]

    def _error(self, message: str) -> None:
        raise NotImplementedError

    def _write_state(self) -> None:
        raise NotImplementedError

    # -- storing -----------------------------------------------------------------------------
    def sweep(self) -> int:
        """Store completed files, then snapshot the segment being written; how many were stored."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as exc:
            self._error(f"Cannot list {self.directory}: {exc.strerror}")
            return 0
        stored = 0
        done = [n for n in names if _COMPLETE.match(n)]
        for name in done:
            if not self._store_complete(name):
                break  # keep order: a failed segment is retried before any later one
            stored += 1
        self.state.backlog = len(done) - stored
        for name in names:
            if _PARTIAL.match(name) and self.state.backlog == 0:
                self._snapshot_partial(name)
        self.state.updated_at = datetime.now(UTC).isoformat()
        self._write_state()
        return stored

    def _store_complete(self, name: str) -> bool:
        path = self.directory / name
        try:
            raw = path.read_bytes()
            res = self.archive.push_bytes(name, raw, self.stages, sysid=self.sysid, mtime=_mtime(path))
        except FileNotFoundError:
            return True
        except (PosterityError, OSError) as exc:
            msg = exc.message if isinstance(exc, PosterityError) else str(exc)
            self._error(f"Storing streamed WAL file {name} failed (kept in {self.directory}, retried): {msg}")
            return False
        path.unlink(missing_ok=True)
        log.debug("Stored streamed %s (%s).", name, res.status)
        if len(name) == 24:
            self.state.segments_stored += 1
            self.state.last_segment = name
            self.state.last_segment_at = datetime.now(UTC).isoformat()
            self._seen.pop(name + ".partial", None)
            old = self._snapshot.pop(name, None)
            if old is not None:
                self._delete_snapshot(old[1])
        return True

    def _snapshot_partial(self, fname: str) -> None:
        path = self.directory / fname
        segment = fname[:24]
        try:
            st = path.stat()
            if self._seen.get(fname) == (st.st_mtime_ns, st.st_size):
                return
            data = path.read_bytes()
            after = path.stat()
        except FileNotFoundError:
            return  # completed meanwhile: the next sweep stores it whole
        except OSError as exc:
            self._error(f"Cannot read {path}: {exc.strerror}")
            return
        # Looked at for good only if nothing was written during the read, nor so recently that a
        # later write could share the same coarse mtime; otherwise it is read again next turn.
        settled = (after.st_mtime_ns, after.st_size) == (st.st_mtime_ns, st.st_size) and \
            time.time_ns() - after.st_mtime_ns > SETTLE_NS
        seen = (st.st_mtime_ns, st.st_size) if settled else None
        written = data.rstrip(b"\0")  # pg_receivewal zero-fills the file first; the zeros come back on restore
        prev = self._snapshot.get(segment)
        if not written or (prev is not None and len(written) <= prev[0]):
            if seen:
                self._seen[fname] = seen
            return
        name = wal.stream_name(segment, len(written))
        try:
            self.archive.push_bytes(name, written, self.stages, sysid=self.sysid)
        except PosterityError as exc:
            self._error(f"Storing a snapshot of {segment} failed (retried): {exc.message}")
            return
        if seen:
            self._seen[fname] = seen
        self._snapshot[segment] = (len(written), name)
        self.state.last_snapshot = name
        self.state.last_snapshot_at = datetime.now(UTC).isoformat()
        if prev is not None:
            self._delete_snapshot(prev[1])

    def _delete_snapshot(self, name: str) -> None:
        """Best effort: a superseded snapshot left behind (bucket lock, outage) is pruned later."""
        try:
            self.archive.forget(name)
        except (PosterityError, StorageError) as exc:
            log.debug("Could not delete superseded snapshot %s: %s", name, exc)


def _mtime(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return None
