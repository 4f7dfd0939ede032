"""Who holds a lock, recorded so that a later run can prove the holder is gone.

A pid alone proves nothing: in a container (or under ``unshare --pid``) a backup runs as
pid 1, and pid 1 on the host is always alive; pids are also reused. A lock therefore
records, beside host and pid:

- ``boot_id`` — ``/proc/sys/kernel/random/boot_id``, the same for every container on one
  running kernel and new after each reboot;
- ``pid_ns`` — the inode of the owner's pid namespace (``/proc/self/ns/pid``);
- ``start_ticks`` — the owner's start time in clock ticks since boot (``/proc/self/stat``
  field 22), which tells a reused pid from the owner.

The owner is provably gone when (a) same kernel, same pid namespace, and its pid is not
running or runs with another start time; (b) same kernel, another pid namespace, we are in
the initial pid namespace (we see every process on the machine) and no process lives in the
owner's namespace any more — a pid namespace dies with its pid 1; (c) same host name but
another boot id: the machine rebooted since. Anything else (another machine, a sibling
container that cannot see the owner's namespace, unreadable /proc) is not a proof, and the
lock is respected until it expires.

``/proc/self`` is read rather than ``/proc/<getpid()>``: under ``unshare --pid`` without a
new /proc mount, ``/proc/1`` is the host's init, not us.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

INIT_PID_NS = 0xEFFFFFFC  # PROC_PID_INIT_INO: the inode of the initial pid namespace
PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ns_inode(link: Path) -> int | None:
    try:
        text = os.readlink(link)  # "pid:[4026531836]"
    except OSError:
        return None
    try:
        return int(text[text.index("[") + 1 : text.index("]")])
    except ValueError:
        return None


def _start_ticks(stat_path: Path) -> int | None:
    text = _read(stat_path)
    if not text:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22 overall; rest starts at field 3
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    return _read(PROC / "sys/kernel/random/boot_id")


def identity() -> dict:
    """What a lock records about the current process (values that cannot be read are left out)."""
    out: dict = {"host": socket.gethostname(), "pid": os.getpid()}
    for key, value in (
        ("boot_id", boot_id()),
        ("pid_ns", _ns_inode(PROC / "self/ns/pid")),
        ("start_ticks", _start_ticks(PROC / "self/stat")),
    ):
        if value is not None:
            out[key] = value
    return out


def owner_is_gone(held: dict) -> str | None:
    """Why the owner recorded in ``held`` is provably no longer running, or None."""
    pid = held.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    mine = identity()
    their_boot = held.get("boot_id")
    if isinstance(their_boot, str) and mine.get("boot_id"):
        if their_boot != mine["boot_id"]:
            if held.get("host") == mine["host"]:
                return "this machine has rebooted since"
            return None  # another machine: nothing to check
        their_ns = held.get("pid_ns")
        if isinstance(their_ns, int) and their_ns != mine.get("pid_ns"):
            return _namespace_gone(their_ns, pid)
        return _pid_gone(pid, held.get("start_ticks"), mine)
    # A lock written before owners were recorded this way: host and pid only.
    if held.get("host") != mine["host"] or pid == 1:
        return None
    return _pid_gone(pid, None, mine)


def _pid_gone(pid: int, start_ticks: object, mine: dict) -> str | None:
    if pid == mine["pid"] and start_ticks in (None, mine.get("start_ticks")):
        return None  # that is us (a re-entrant call): not gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process {pid} is no longer running"
    except OSError:  # exists, owned by someone else
        pass
    if isinstance(start_ticks, int) and _proc_is_ours():
        now = _start_ticks(PROC / str(pid) / "stat") if pid != mine["pid"] else mine.get("start_ticks")
        if now is not None and now != start_ticks:
            return f"its process {pid} is no longer running (the pid now belongs to another process)"
    return None


def _proc_is_ours() -> bool:
    """Whether /proc shows pids as this process sees them (not a parent namespace's /proc)."""
    try:
        return int(os.readlink(PROC / "self")) == os.getpid()
    except (OSError, ValueError):
        return False


def _nesting(entry: Path) -> int | None:
    """How many pid namespaces ``entry`` is a member of (the ``NSpid`` line of its status)."""
    for line in (_read(entry / "status") or "").splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 1
    return None


def _namespace_gone(ns: int, pid: int) -> str | None:
    """A reason only when we can see every process on the machine and none is in ``ns``."""
    if _ns_inode(PROC / "self/ns/pid") != INIT_PID_NS or not _proc_is_ours():
        return None
    try:
        entries = [p for p in PROC.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            text = os.readlink(entry / "ns/pid")
        except FileNotFoundError:
            continue  # exited while we looked
        except OSError:
            if _nesting(entry) == 1:
                continue  # unreadable, but in the initial namespace (one pid level): not the owner's
            return None  # cannot see which namespace this one is in: no proof
        if text == f"pid:[{ns}]":
            return None
    return f"its process {pid} ran in a pid namespace (container) that no longer exists"
