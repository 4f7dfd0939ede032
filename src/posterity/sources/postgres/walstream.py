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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
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

from ...errors import ConfigError, LockHeld, PosterityError, SourceError, StorageError
from ...repository import walnames as wal
from ...repository.walarchive import WalArchive, write_file
from .physical_config import PhysicalConfig
from .tools import client_env, connect, describe, require_client

log = logging.getLogger(__name__)

_COMPLETE = re.compile(r"^([0-9A-F]{24}|[0-9A-F]{8}\.history)$")
_PARTIAL = re.compile(r"^([0-9A-F]{24})\.partial$")
RESTART_BACKOFF = (1, 2, 5, 10, 30)
ALERT_AFTER = 60.0  # seconds of continuous errors before the streamer alerts
SETTLE_NS = 100_000_000  # a partial file written less than 0.1 s ago is read again next turn


class StreamerBusy(LockHeld):
    """Another streamer already runs for this source."""

    default_hint = "Stop the other `posterity wal stream` (or daemon) first; one streamer per source."


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


# -- the slot --------------------------------------------------------------------------------


def server_facts(dsn: str) -> dict[str, Any]:
    """Version, system identifier and replication settings, checked for streaming."""
    with connect(dsn) as conn:
        row = conn.execute(
            "select current_setting('server_version_num')::int, current_setting('wal_level'), "
            "current_setting('max_wal_senders')::int, "
            "(select rolreplication or rolsuper from pg_roles where rolname = current_user)"
        ).fetchone()
        assert row is not None
        try:
            sysid_row = conn.execute("select system_identifier::text from pg_control_system()").fetchone()
            sysid = sysid_row[0] if sysid_row else None
        except Exception:  # pg_control_system() may be revoked from this role: the id is informational
            sysid = None
    version_num, wal_level, senders, can_replicate = row
    where = describe(dsn)
    if version_num < 150000:
        # Older pg_receivewal starts at the server's current position, not the slot's, when its
        # folder is empty: WAL the slot kept would be skipped, leaving a gap.
        raise SourceError(f"{where} runs PostgreSQL {version_num // 10000}; streaming mode needs 15 or newer.",
                          hint='Use wal = "archive" (archive_command) for this server.')
    if not can_replicate:
        raise SourceError(f"The role connecting to {where} has no REPLICATION privilege; streaming WAL needs it.",
                          hint="ALTER ROLE <user> REPLICATION; and allow it in pg_hba.conf (a 'replication' line).")
    if wal_level == "minimal" or senders < 1:
        raise SourceError(f"{where} cannot stream WAL (wal_level = {wal_level}, max_wal_senders = {senders}).",
                          hint="Set wal_level = replica and max_wal_senders >= 2 (one for the streamer, one for "
                          "base backups), then restart PostgreSQL.")
    return {"server_version_num": version_num, "system_identifier": sysid}


def slot_info(dsn: str, slot: str) -> dict[str, Any] | None:
    """The slot's state on the server, or None when it does not exist."""
    with connect(dsn) as conn:
        row = conn.execute(
            "select slot_type, active, active_pid, restart_lsn::text, wal_status, "
            "case when pg_is_in_recovery() then null "
            "else pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint end "
            "from pg_replication_slots where slot_name = %s", (slot,)
        ).fetchone()
    if row is None:
        return None
    return {"slot": slot, "type": row[0], "active": row[1], "active_pid": row[2], "restart_lsn": row[3],
            "wal_status": row[4], "retained_bytes": row[5]}


def ensure_slot(dsn: str, slot: str) -> dict[str, Any]:
    """Create the physical slot (reserving WAL from now) unless it exists; its state."""
    info = slot_info(dsn, slot)
    if info is None:
        with connect(dsn) as conn:
            try:
                conn.execute("select pg_create_physical_replication_slot(%s, true)", (slot,))
            except Exception as exc:  # a race with another creator is fine; anything else is reported
                if slot_info(dsn, slot) is None:
                    raise SourceError(f"Could not create the replication slot {slot!r} on {describe(dsn)}: {exc}",
                                      hint="Check max_replication_slots and that the role has REPLICATION.") from exc
        log.info("Created the physical replication slot %s on %s.", slot, describe(dsn))
        info = slot_info(dsn, slot)
        assert info is not None
    elif info["wal_status"] == "lost":
        raise SourceError(
            f"The replication slot {slot!r} on {describe(dsn)} is invalidated (wal_status lost): the server removed "
            "WAL it had kept for it, so the archive stops at the last stored segment.",
            hint="Drop the slot (`posterity wal stream --drop-slot`), move the stream folder's .partial file aside, "
            "start the streamer again, and take a new base backup: restores cannot cross the gap.")
    elif info["type"] != "physical":
        raise ConfigError(f"The replication slot {slot!r} on {describe(dsn)} is a {info['type']} slot, not physical.",
                          hint="Choose another name with slot = \"...\" in the source's section.")
    return info


def drop_slot(dsn: str, slot: str) -> bool:
    """Drop the slot (the server then stops keeping WAL for it); False when it did not exist."""
    info = slot_info(dsn, slot)
    if info is None:
        return False
    if info["active"]:
        raise StreamerBusy(f"The replication slot {slot!r} is in use (pid {info['active_pid']}); not dropped.")
    with connect(dsn) as conn:
        conn.execute("select pg_drop_replication_slot(%s)", (slot,))
    return True


# -- the streamer ----------------------------------------------------------------------------


class WalStreamer:
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


def _mtime(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return None


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
