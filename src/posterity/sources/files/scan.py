"""Walk the configured paths (sorted, depth first), hash files, and count warnings.

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
import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ...errors import SourceError
from .entries import (
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    Entry,
    classify,
    digest,
    entry_from_stat,
    member_name,
    special_kind,
)
from .excludes import Excluder

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_WARNINGS = 100


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
            raise _unreadable(root, exc) from None
        try:
            if stat.S_ISDIR(st.st_mode):
                with os.scandir(root) as it:
                    next(it, None)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(root, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                os.close(fd)
        except OSError as exc:
            raise _unreadable(root, exc) from None


def _unreadable(root: str, exc: OSError) -> SourceError:
    return SourceError(
        f"Cannot read the configured path {root}: {exc.strerror}.",
        hint="Run posterity as a user that can read it (root for most of /etc), or remove it from paths.",
    )


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
