"""What the manifest records of each file: ``Entry``, its kind, and the content digest.

A record holds a file's metadata and the sha256 of its content (never the content). The
digest over all records says "nothing changed" without comparing payloads: two walks of an
unchanged tree give the same records in the same order.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import stat
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DIGEST_VERSION = "posterity-files-v1"

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def member_name(path: str) -> str:
    """The tar member name of an absolute path: the path without the leading ``/``."""
    return path.lstrip("/")


@dataclass
class Entry:
    """One file's metadata as the manifest records it (content only as a sha256)."""

    path: str  # member name: absolute path without the leading /
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    sha256: str = ""
    target: str = ""  # symlink target, or the member name a hard link points to

    def record(self) -> dict[str, Any]:
        r: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "user": user_name(self.uid),
            "group": group_name(self.gid),
            "mtime_ns": self.mtime_ns,
        }
        if self.type in (FILE, HARDLINK):
            r["sha256"] = self.sha256
        if self.type in (SYMLINK, HARDLINK):
            r["target"] = self.target
        return r


def entry_from_stat(name: str, st: os.stat_result, kind: str) -> Entry:
    return Entry(
        path=name,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        size=st.st_size if kind == FILE else 0,
    )


def digest(roots: list[str], records: list[dict[str, Any]]) -> str:
    """The content digest: paths, types, sizes, modes, owners, mtimes, sha256s and link targets.

    User and group *names* are left out (they are lookups on the backup host, not content).
    """
    h = hashlib.sha256()
    h.update(f"{DIGEST_VERSION}\n".encode())
    h.update((json.dumps(roots) + "\n").encode())
    for r in records:
        core = {k: v for k, v in r.items() if k not in ("user", "group")}
        h.update((json.dumps(core, sort_keys=True) + "\n").encode())
    return "sha256:" + h.hexdigest()


def classify(st: os.stat_result) -> str | None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return None


def special_kind(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def summary(records: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "bytes": 0}
    for r in records:
        key = {FILE: "files", DIR: "dirs", SYMLINK: "symlinks", HARDLINK: "hardlinks"}[r["type"]]
        counts[key] += 1
        if r["type"] == FILE:
            counts["bytes"] += int(r.get("size", 0))
    return counts
