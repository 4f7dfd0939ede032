"""Streaming mode (``wal = "stream"``): WAL arrives through replication, not archive_command.

``pg_receivewal`` streams from the server through a physical replication slot that
Posterity creates (reserving WAL from that moment) into a local folder; this module stores
what it writes:

- every **completed file** (a 16 MiB segment, a timeline ``.history``) is pushed exactly
  like ``wal push`` does (record, then payload, both create-only) and only then removed
  from the folder. A file that cannot be stored stays and is retried every turn;
- the **segment being written** (pg_receivewal's ``<segment>.partial``, zero-padded to
  full size) is snapshotted every ``stream_interval`` seconds when it grew: its written
  part is stored as ``<segment>.<length>.stream`` (a new, create-only name each time; the
  previous snapshot is then deleted, best effort). A restore to latest puts the newest
  snapshot back, zero-padded, as the segment recovery reads last — which is what makes the
  RPO seconds rather than a segment or ``archive_timeout``.

Why a slot: without one the server may recycle WAL the streamer has not received (while it
restarts, say), and the archive would have a gap. With one, the server keeps WAL until
pg_receivewal reports it flushed to the local folder; the folder is the buffer while the
object store is unreachable (``wal status`` shows its backlog). The price is the server's
disk when the streamer is down for long: ``max_slot_wal_keep_size`` bounds it.

One streamer per source: an exclusive lock on the local folder, and the slot itself (the
server allows one active connection per slot).

This module is the supervisor (the pg_receivewal process, restarts, alerts, the state
file); the slot is ``walstream_slot.py``, storing files and snapshots ``walstream_snapshot.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import PosterityError
from ...repository.walarchive import WalArchive, write_file
from .physical_config import PhysicalConfig
from .tools import client_env, describe, require_client
from .walstream_slot import StreamerBusy, drop_slot, ensure_slot, server_facts, slot_info
from .walstream_snapshot import _COMPLETE, SnapshotSweeper

log = logging.getLogger(__name__)

__all__ = [
    "_COMPLETE",
    "StreamerBusy",
    "WalStreamer",
    "drop_slot",
    "ensure_slot",
    "read_state",
    "server_facts",
    "slot_info",
    "state_file",
    "stream_directory",
]

RESTART_BACKOFF = (1, 2, 5, 10, 30)
ALERT_AFTER = 60.0  # seconds of continuous errors before the streamer alerts


@dataclass
class StreamState:
    """What ``wal status`` shows of a running streamer (written to its state file)."""

    source: str
    slot: str
    pid: int = field(default_factory=os.getpid)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    receiver_running: bool = False
    receiver_restarts: int = 0
    segments_stored: int = 0
    last_segment: str | None = None
    last_segment_at: str | None = None
    last_snapshot: str | None = None
    last_snapshot_at: str | None = None
    backlog: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def state_file(state_dir: Path, source: str) -> Path:
    return state_dir / "walstream" / f"{source}.state.json"


def read_state(state_dir: Path, source: str) -> dict[str, Any] | None:
    try:
        data = json.loads(state_file(state_dir, source).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stream_directory(cfg: PhysicalConfig, state_dir: Path, source: str) -> Path:
    return Path(cfg.stream_directory) if cfg.stream_directory else state_dir / "walstream" / source



# -- the streamer ----------------------------------------------------------------------------


class WalStreamer(SnapshotSweeper):
    def __init__(self, archive: WalArchive, cfg: PhysicalConfig, stages: Any, state_dir: Path,
                 alert: Callable[[str, str, str], Any] | None = None) -> None:
        self.archive = archive
        source = self.source = archive.source
        self.cfg = cfg
        self.stages = stages
        self.dsn = cfg.dsn.get_secret_value()
        self.slot = cfg.slot_name(source)
        self.directory = stream_directory(cfg, state_dir, source)
        self.state_path = state_file(state_dir, source)
        self.state = StreamState(source, self.slot)
        self.sysid: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=20)
        self._seen: dict[str, tuple[int, int]] = {}  # partial file -> (mtime_ns, size) last looked at
        self._snapshot: dict[str, tuple[int, str]] = {}  # segment -> (length, name) of its stored snapshot
        self._lock_fd: int | None = None
        self._started = 0.0
        self.alert = alert  # (kind, title, body), e.g. the daemon's Notifier.event
        self._turn_failed = False
        self._failing_since: float | None = None
        self._alerted = False
        self._logged_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Lock the folder, check the server, create the slot."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock()
        try:
            facts = server_facts(self.dsn)
            self.sysid = facts["system_identifier"]
            self.tool, _ = require_client("pg_receivewal", facts["server_version_num"] // 10000, self.cfg.bin_dir)
            info = ensure_slot(self.dsn, self.slot)
            if info["active"]:
                raise StreamerBusy(f"The replication slot {self.slot!r} on {describe(self.dsn)} is already in use "
                                   f"(pid {info['active_pid']} on the server): another streamer is running.")
        except BaseException:
            self.close()  # the daemon retries with a new streamer, which needs the folder's lock
            raise

    def _lock(self) -> None:
        fd = os.open(self.directory / ".posterity-stream.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise StreamerBusy(f"Another streamer (pid {holder or '?'}) is using {self.directory} for source "
                               f"{self.source!r}.") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        self.stop_receiver()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop`` is set; restarts pg_receivewal when it exits."""
        self.prepare()
        try:
            failures, next_start = 0, 0.0
            while not stop.is_set():
                now = time.monotonic()
                if self.proc is not None and self.proc.poll() is not None:
                    self._receiver_exited()
                    next_start = now + RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
                    failures += 1
                if self.proc is None and now >= next_start:
                    self.start_receiver()
                elif self.proc is not None and now - self._started > 60:
                    failures = 0  # it has run a minute: the next failure starts the backoff afresh
                self.sweep()
                if failures:  # the receiver exited and has not run a minute since: still failing
                    self._turn_failed = True
                self._end_turn()
                stop.wait(self.cfg.stream_interval)
        finally:
            self.stop_receiver()
            with contextlib.suppress(PosterityError, OSError):
                self.sweep()  # what arrived before the stop, including the last snapshot
            self.state.receiver_running = False
            self._write_state()
            self.close()

    def start_receiver(self) -> None:
        argv = [str(self.tool), "--directory", str(self.directory), "--slot", self.slot, "--no-loop",
                "--no-password", "--status-interval", "1"]
        self._stderr.clear()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=client_env(self.dsn), start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self._started = time.monotonic()
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True, name="pg_receivewal-stderr").start()
        self.state.receiver_running = True
        log.info("Streaming WAL of %s through slot %s into %s (pg_receivewal pid %d).",
                 describe(self.dsn), self.slot, self.directory, self.proc.pid)

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            text = line.decode(errors="replace").rstrip()
            if text:
                self._stderr.append(text)
                log.debug("pg_receivewal: %s", text)

    def _receiver_exited(self) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        self.proc = None
        time.sleep(0.05)  # let the stderr reader take the last lines
        why = "; ".join(list(self._stderr)[-3:]) or "no message"
        self.state.receiver_running = False
        self.state.receiver_restarts += 1
        try:
            info = slot_info(self.dsn, self.slot)
        except PosterityError:
            info = {}  # the server is unreachable: pg_receivewal's own message says so
        if info is None:
            why += f" — the replication slot {self.slot} no longer exists (restart the streamer to recreate it)"
        elif info.get("wal_status") == "lost":
            why += (f" — the replication slot {self.slot} is invalidated: drop it (wal stream --drop-slot), move the "
                    ".partial aside, restart, and take a new base backup")
        self._error(f"pg_receivewal exited with code {rc}: {why}")

    def stop_receiver(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # pg_receivewal flushes what it has and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _end_turn(self) -> None:
        """Alert once when errors have lasted ALERT_AFTER seconds, and once when they stop."""
        now = time.monotonic()
        failed, self._turn_failed = self._turn_failed, False
        if failed:
            self._failing_since = self._failing_since or now
            if not self._alerted and now - self._failing_since >= ALERT_AFTER and self.alert:
                self._alerted = True
                self.alert("failure", f"{self.source}: WAL streaming failing",
                           f"Streaming WAL of {self.source} has failed for {now - self._failing_since:.0f}s: "
                           f"{self.state.last_error}\nCommits since then are not in the repository yet.")
        elif self._failing_since is not None:
            if self._alerted and self.alert:
                self.alert("recovery", f"{self.source}: WAL streaming recovered",
                           f"Streaming WAL of {self.source} works again.")
            self._failing_since, self._alerted = None, False

    def _error(self, message: str) -> None:
        """Record an error; the log gets it once a minute while it repeats unchanged."""
        self._turn_failed = True
        now = time.monotonic()
        if message != self.state.last_error or now - self._logged_at >= 60:
            log.warning("%s", message)
            self._logged_at = now
        self.state.last_error = message
        self.state.last_error_at = datetime.now(UTC).isoformat()

    def _write_state(self) -> None:
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            write_file(self.state_path, json.dumps(self.state.to_dict(), indent=1).encode())
        except OSError as exc:
            log.debug("Cannot write %s: %s", self.state_path, exc)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: pg_receivewal gets SIGINT when the streamer dies (even by SIGKILL), so no
    orphan keeps the slot busy and the next streamer can take it. Only a call into libc,
    loaded beforehand: the child of a threaded process must not import or take locks."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def _load_libc() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()
