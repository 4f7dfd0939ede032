"""Walk the configured paths: excludes, per-file records, the content digest.

The walk is depth-first in sorted name order, so two walks of an unchanged tree yield the
same records in the same order, and the digest of those records says "nothing changed"
without comparing payloads. Symlinks are recorded as links and never followed; a regular
file already seen under another name (same device and inode) is recorded as a hard link
to the first name, as GNU tar does.

What is an error and what is a warning (the rule pgBackRest and restic follow):
- a configured path that is missing or unreadable fails the backup (``check_roots``): the
  configuration promises it, so silently storing less would be a lie;
- anything below a configured path that vanishes or cannot be read while we walk is
  skipped with a warning, recorded in the manifest (``facts["warnings"]``), and the backup
  continues: configuration folders change under us (editors' temp files, rotations) and
  one such file must not cost the whole backup.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import logging
import os
import pwd
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ...errors import SourceError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_WARNINGS = 100
DIGEST_VERSION = "posterity-files-v1"

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"


# -- excludes -------------------------------------------------------------------------


def _translate(pattern: str) -> str:
    """A glob as a regex: ``**`` spans folders, ``*`` and ``?`` stay within one name."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class Excluder:
    """Exclude patterns: without a ``/`` a pattern matches a name at any depth (``*.tmp``);
    with one it matches the absolute path (anchored when it starts with ``/``, otherwise at
    any depth, so ``**/cache/**`` and ``cache/**`` both skip every cache folder's content).
    A trailing ``/`` limits a pattern to folders."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[tuple[re.Pattern[str], bool, bool]] = []  # (regex, on_name, dirs_only)
        for raw in patterns:
            p = raw.strip()
            dirs_only = p.endswith("/") and len(p) > 1
            p = p.rstrip("/") or "/"
            if "/" not in p:
                self.rules.append((re.compile(_translate(p), re.S), True, dirs_only))
            elif p.startswith("/"):
                self.rules.append((re.compile(_translate(p), re.S), False, dirs_only))
            else:
                self.rules.append((re.compile("/(?:.*/)?" + _translate(p), re.S), False, dirs_only))

    def __call__(self, path: str, is_dir: bool) -> bool:
        name = path.rsplit("/", 1)[-1]
        for rx, on_name, dirs_only in self.rules:
            if dirs_only and not is_dir:
                continue
            if rx.fullmatch(name if on_name else path):
                return True
        return False


# -- records --------------------------------------------------------------------------


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


# -- warnings -------------------------------------------------------------------------


@dataclass
class Warnings:
    items: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, message: str) -> None:
        self.count += 1
        log.warning("%s", message)
        if len(self.items) < MAX_WARNINGS:
            self.items.append(message)

    def skipped(self, path: str, exc: OSError, what: str = "") -> None:
        if exc.errno == errno.ENOENT:
            self.add(f"{path} vanished during the backup; skipped")
        else:
            self.add(f"{path}: {what or 'cannot read'} ({exc.strerror}); skipped")

    def as_facts(self) -> list[str]:
        if self.count > len(self.items):
            return [*self.items, f"… and {self.count - len(self.items)} more (see the log)"]
        return list(self.items)


# -- the walk -------------------------------------------------------------------------


def check_roots(roots: list[str]) -> None:
    """Every configured path must exist and be readable; otherwise the backup fails now."""
    for root in roots:
        try:
            st = os.lstat(root)
        except FileNotFoundError:
            raise SourceError(
                f"The configured path {root} does not exist.",
                hint="Fix or remove it in the source's paths (every configured path must exist).",
            ) from None
        except OSError as exc:
            raise SourceError(
                f"Cannot read the configured path {root}: {exc.strerror}.",
                hint="Run posterity as a user that can read it (root for most of /etc), or remove it from paths.",
            ) from None
        try:
            if stat.S_ISDIR(st.st_mode):
                with os.scandir(root) as it:
                    next(it, None)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(root, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                os.close(fd)
        except OSError as exc:
            raise SourceError(
                f"Cannot read the configured path {root}: {exc.strerror}.",
                hint="Run posterity as a user that can read it (root for most of /etc), or remove it from paths.",
            ) from None


def top_roots(roots: list[str]) -> list[str]:
    """Sorted roots without those inside another root (they are walked with it)."""
    out: list[str] = []
    for r in sorted(set(roots)):
        if not any(r.startswith(o + "/") for o in out):
            out.append(r)
    return out


def walk(
    roots: list[str], excluded: Excluder, warnings: Warnings
) -> Iterator[tuple[str, os.stat_result]]:
    """(absolute path, lstat) of every root and everything below it, depth first, sorted."""
    for root in top_roots(roots):
        try:
            st = os.lstat(root)
        except OSError as exc:
            raise SourceError(
                f"The configured path {root} cannot be read: {exc.strerror}."
            ) from None
        if excluded(root, stat.S_ISDIR(st.st_mode)):
            continue
        yield root, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root, excluded, warnings)


def _walk_dir(
    folder: str, excluded: Excluder, warnings: Warnings
) -> Iterator[tuple[str, os.stat_result]]:
    """Depth first in sorted order: a folder's content comes right after the folder."""
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it)
    except OSError as exc:
        warnings.skipped(folder, exc, "cannot list the folder")
        return
    for name in names:
        path = f"{folder}/{name}"
        try:
            st = os.lstat(path)
        except OSError as exc:
            warnings.skipped(path, exc)
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if excluded(path, is_dir):
            continue
        yield path, st
        if is_dir:
            yield from _walk_dir(path, excluded, warnings)


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


def hash_file(path: str) -> tuple[os.stat_result, str]:
    """(fstat of the opened file, sha256 of its bytes). Never follows a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file")
        h = hashlib.sha256()
        while chunk := fh.read(CHUNK):
            h.update(chunk)
        return st, h.hexdigest()


@dataclass
class Scan:
    """The result of a pre-pass: records, their digest and the total size."""

    records: list[dict[str, Any]]
    digest: str
    total_size: int
    warnings: Warnings


def scan(roots: list[str], exclude: list[str]) -> Scan:
    """Walk and hash everything (no tar): what the next backup would store, as a digest."""
    warnings = Warnings()
    excluded = Excluder(exclude)
    records: list[dict[str, Any]] = []
    links: dict[tuple[int, int], Entry] = {}
    total = 0
    for path, st in walk(roots, excluded, warnings):
        name = member_name(path)
        kind = classify(st)
        if kind is None:
            warnings.add(f"{path} is a {special_kind(st)}; skipped")
            continue
        if kind == FILE:
            first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                e = entry_from_stat(name, st, HARDLINK)
                e.sha256, e.target, e.size = first.sha256, first.path, first.size
                records.append(e.record())
                continue
            try:
                fst, sha = hash_file(path)
            except OSError as exc:
                warnings.skipped(path, exc)
                continue
            e = entry_from_stat(name, fst, FILE)
            e.sha256 = sha
            total += e.size
            if fst.st_nlink > 1:
                links[(fst.st_dev, fst.st_ino)] = e
        elif kind == SYMLINK:
            try:
                target = os.readlink(path)
            except OSError as exc:
                warnings.skipped(path, exc)
                continue
            e = entry_from_stat(name, st, SYMLINK)
            e.target = target
        else:
            e = entry_from_stat(name, st, DIR)
        records.append(e.record())
    return Scan(records, digest(top_roots(roots), records), total, warnings)


def summary(records: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "bytes": 0}
    for r in records:
        key = {FILE: "files", DIR: "dirs", SYMLINK: "symlinks", HARDLINK: "hardlinks"}[r["type"]]
        counts[key] += 1
        if r["type"] == FILE:
            counts["bytes"] += int(r.get("size", 0))
    return counts
