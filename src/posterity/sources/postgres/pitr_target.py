"""What a point-in-time restore may do to its ``--to-directory``, and leftovers of killed runs.

``--force`` never deletes first. It accepts only a folder that is provably a PostgreSQL data
directory (``PG_VERSION`` and ``global/``) whose server is not running, and that holds none of
the paths this configuration lives on (repository, state folder, config file). Anything else
that is not empty — the parent of a data directory, a repository, a tablespace folder, a
home — is refused, because "not empty" there means someone else's data.

An accepted folder is moved aside (renamed beside itself, or its contents moved into a
subfolder when it is a mount point) and removed only after the restore has written
everything; if the restore fails, the old contents are moved back.

Staging folders (``.posterity-pitr-<pid>-…``, decrypted WAL, mode 0700) carry the pid of the
restore that made them, so the next restore beside the same target removes those whose
process is gone — a killed restore leaves no decrypted WAL behind for long.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import RestoreTargetError
from ...localpg.server import pid_alive

log = logging.getLogger(__name__)

STAGING_PREFIX = ".posterity-pitr-"
ASIDE_MARK = ".posterity-replaced-"
_STAGING_RE = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)-")
LEGACY_STAGING_AGE = 24 * 3600  # staging folders of older versions carry no pid


def _running_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def is_data_directory(path: Path) -> bool:
    return (path / "PG_VERSION").is_file() and (path / "global").is_dir()


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def check_directory(path: Path, force: bool, protected: list[Path] | None = None) -> bool:
    """Raise unless ``path`` may be restored into; returns whether it exists with contents."""
    resolved = path.resolve()
    if resolved == Path("/") or resolved == Path.home().resolve():
        raise RestoreTargetError(f"Refusing to restore into {path}; choose a folder of its own.")
    if path.exists() and not path.is_dir():
        raise RestoreTargetError(f"{path} exists and is not a directory; nothing was changed.")
    pid = _running_pid(path)
    if pid is not None:
        raise RestoreTargetError(
            f"{path} is in use by a running PostgreSQL (pid {pid}); nothing was changed.",
            hint="Stop that server first, or restore into another --to-directory.")
    for p in protected or []:
        if _inside(p, path):
            raise RestoreTargetError(
                f"{path} holds {p}, which this configuration uses (repository, state folder or config); "
                "nothing was changed.", hint="Restore into a folder of its own.")
    busy = path.is_dir() and any(path.iterdir())
    if busy and not force:
        raise RestoreTargetError(f"{path} is not empty; nothing was changed.",
                                 hint="Restore into an empty or new directory, or add --force to replace a "
                                      "stopped PostgreSQL data directory.")
    if busy and not is_data_directory(path):
        raise RestoreTargetError(
            f"{path} is not empty and is not a PostgreSQL data directory (no PG_VERSION and global/), so --force "
            "will not replace it; nothing was changed.",
            hint="--force replaces only a stopped data directory. Point --to-directory at the data directory "
                 "itself, or at a new or empty folder.")
    if not path.exists() and not path.parent.is_dir():
        raise RestoreTargetError(f"The parent folder {path.parent} does not exist; nothing was changed.")
    return busy


@dataclass
class Aside:
    """The old contents of a ``--force`` target, kept until the restore has succeeded."""

    target: Path
    holder: Path  # where the old contents are now
    whole: bool  # True: ``holder`` is the renamed target; False: a subfolder of the target

    def restore_back(self) -> None:
        """Put the old contents back (the restore failed; what it wrote is already gone)."""
        if self.whole:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.target)
            os.rename(self.holder, self.target)
            return
        for child in self.holder.iterdir():
            os.rename(child, self.target / child.name)
        self.holder.rmdir()

    def discard(self) -> None:
        shutil.rmtree(self.holder, ignore_errors=True)


def move_aside(target: Path) -> Aside:
    """Move the contents of ``target`` out of the way without deleting anything."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    beside = target.parent / f".{target.name}{ASIDE_MARK}{stamp}-{os.getpid()}"
    try:
        os.rename(target, beside)
        return Aside(target, beside, whole=True)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EACCES, errno.EPERM):
            raise
    # A mount point cannot be renamed: keep the old contents in a subfolder instead.
    inner = target / f"{ASIDE_MARK.lstrip('.')}{stamp}-{os.getpid()}"
    inner.mkdir(mode=0o700)
    for child in list(target.iterdir()):
        if child != inner:
            os.rename(child, inner / child.name)
    return Aside(target, inner, whole=False)


def earlier_asides(target: Path) -> list[Path]:
    """Old contents an earlier ``--force`` restore of ``target`` moved aside and, killed, never removed."""
    found = list(target.parent.glob(f".{target.name}{ASIDE_MARK}*")) if target.parent.is_dir() else []
    if target.is_dir():
        found += list(target.glob(f"{ASIDE_MARK.lstrip('.')}*"))
    return sorted(p for p in found if p.is_dir())


def clear_stale_staging(parent: Path) -> list[Path]:
    """Remove staging folders of restores that are no longer running; returns what was removed."""
    removed: list[Path] = []
    try:
        children = list(parent.glob(STAGING_PREFIX + "*"))
    except OSError:
        return removed
    now = time.time()
    for child in children:
        if not child.is_dir() or child.is_symlink():
            continue
        m = _STAGING_RE.match(child.name)
        if m:
            if pid_alive(int(m.group(1))):
                continue
        else:
            try:
                if now - child.stat().st_mtime < LEGACY_STAGING_AGE:
                    continue
            except OSError:
                continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
        log.info("Removed %s, left by a restore that did not finish.", child)
    return removed


def make_staging(parent: Path) -> Path:
    """A private (0700) staging folder named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent))
