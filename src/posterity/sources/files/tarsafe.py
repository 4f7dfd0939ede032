"""Extract a tar stream into a folder without ever writing outside it.

Each member is checked before anything is written for it (the rules of Python's
``tarfile`` ``filter="data"``, implemented here explicitly so they do not depend on the
Python version and so each refusal names the member and the reason):

- names: absolute names, ``..`` components and NUL bytes are refused; ``./`` is dropped;
- parents: every folder on the way to a member must be a real folder created by this
  extraction, never a symlink, so ``link -> /etc`` followed by ``link/passwd`` is refused;
- symlinks: the target is resolved inside the folder — relative targets from the link's
  folder, absolute ones from the folder's root (as if it were ``/``), following links
  already extracted the same way — and a target that leaves the folder is refused. Absolute
  targets that stay inside are written as they are (``/etc/nginx/sites-available/x``), as
  GNU tar does, so a tree restored to ``/`` is the original; the restore never follows them;
- hard links: the target must be a regular file this extraction already wrote (by its
  member name, never absolute, never ``..``);
- devices, fifos and other special members are refused;
- files are created with ``O_EXCL | O_NOFOLLOW``; a member repeated in the archive replaces
  the earlier copy only when both are non-folders.

Modes are applied to files and links at once and to folders by the caller at the end
(a read-only folder must still receive its content); setuid/setgid bits and owners are
restored only when running as root (as GNU tar does for an ordinary user).
"""

from __future__ import annotations

import errno
import grp
import os
import posixpath
import pwd
import stat
import tarfile
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import IO

from ...errors import RestoreFailed

COPY = 1 << 20
MAX_HOPS = 40


class UnsafeMember(RestoreFailed):
    """The archive holds a member that would be written outside the restore folder."""

    default_hint = (
        "Nothing outside the target folder was touched and nothing was moved into it. This archive was "
        "not written by Posterity's files source, or was altered; inspect it by hand (`tar -tvf`)."
    )


@dataclass
class DirMeta:
    name: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int


@dataclass
class Extracted:
    """What one extraction produced, by member name (relative to the folder)."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    dir_meta: dict[str, DirMeta] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def safe_name(name: str, what: str = "member") -> str:
    """The normalized relative name, or ``UnsafeMember``; '' for the archive root ('./')."""
    if "\x00" in name:
        raise UnsafeMember(f"Refused {what} {name!r}: the name contains a NUL byte.")
    if name.startswith("/") or name.startswith("\\"):
        raise UnsafeMember(
            f"Refused {what} {name!r}: absolute names would be written outside the target folder."
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeMember(f"Refused {what} {name!r}: '..' would climb out of the target folder.")
    return "/".join(parts)


def mtime_ns(member: tarfile.TarInfo) -> int:
    """The member's mtime in nanoseconds, exact when the archive has a pax ``mtime``."""
    text = member.pax_headers.get("mtime")
    if text:
        try:
            return int(Decimal(text) * 1_000_000_000)
        except (InvalidOperation, ValueError):
            pass
    return int(Decimal(str(member.mtime)) * 1_000_000_000)


@lru_cache(maxsize=1024)
def _uid(name: str, fallback: int) -> int:
    try:
        return pwd.getpwnam(name).pw_uid if name else fallback
    except KeyError:
        return fallback


@lru_cache(maxsize=1024)
def _gid(name: str, fallback: int) -> int:
    try:
        return grp.getgrnam(name).gr_gid if name else fallback
    except KeyError:
        return fallback


def owner_of(member: tarfile.TarInfo) -> tuple[int, int]:
    """Owner by name when the name exists on this host (GNU tar's default), else by number."""
    return _uid(member.uname, member.uid), _gid(member.gname, member.gid)


class Extractor:
    """Extracts one tar stream into ``root`` (a fresh, empty folder)."""

    def __init__(self, root: Path, *, as_root: bool | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.as_root = (os.geteuid() == 0) if as_root is None else as_root
        self.result = Extracted()

    # -- checks -----------------------------------------------------------------------
    def _ensure_parents(self, rel: str, member: str, create: bool = True) -> None:
        """Every folder above ``rel`` is a real folder inside root (created if missing)."""
        parts = rel.split("/")[:-1]
        cur = str(self.root)
        for p in parts:
            cur = f"{cur}/{p}"
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                if not create:
                    raise UnsafeMember(
                        f"Refused member {member!r}: its target is not in this archive."
                    ) from None
                os.mkdir(cur, 0o755)  # a folder above the stored paths: tar's default mode
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeMember(
                    f"Refused member {member!r}: its folder {cur[len(str(self.root)) + 1 :]!r} is a symlink, "
                    "and writing through it could leave the target folder."
                )
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeMember(
                    f"Refused member {member!r}: {cur[len(str(self.root)) + 1 :]!r} is not a folder."
                )

    def _resolves_inside(self, link_rel: str, target: str) -> bool:
        """Resolve ``target`` of the link at ``link_rel`` with root as '/', following links."""
        if target.startswith("/"):
            stack: list[str] = []
        else:
            stack = link_rel.split("/")[:-1]
        pending = [p for p in target.split("/") if p not in ("", ".")]
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if not stack:
                    return False
                stack.pop()
                continue
            stack.append(part)
            path = os.path.join(str(self.root), *stack)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # not (yet) there: resolution continues lexically
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_HOPS:
                    return False
                inner = os.readlink(path)
                stack.pop()
                if inner.startswith("/"):
                    stack = []
                pending = [p for p in inner.split("/") if p not in ("", ".")] + pending
        return True

    # -- extraction -------------------------------------------------------------------
    def extract(self, stream: IO[bytes]) -> Extracted:
        with tarfile.open(
            fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                self._member(tar, member)
        return self.result

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = safe_name(member.name)
        if not rel:
            if member.isdir():
                return
            raise UnsafeMember(f"Refused member {member.name!r}: it has no name.")
        if (
            member.ischr()
            or member.isblk()
            or member.isfifo()
            or not (member.isreg() or member.isdir() or member.issym() or member.islnk())
        ):
            raise UnsafeMember(
                f"Refused member {member.name!r}: device files, fifos and special members are not restored."
            )
        self._ensure_parents(rel, member.name)
        path = f"{self.root}/{rel}"
        self._clear(path, rel, member)
        uid, gid = owner_of(member)
        mode = member.mode & (0o7777 if self.as_root else 0o1777)
        mtime = mtime_ns(member)
        if member.isdir():
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
                self.result.dirs += 1
                self.result.names.append(rel)
            self.result.dir_meta[rel] = DirMeta(rel, mode, uid, gid, mtime)
        elif member.issym():
            target = member.linkname
            if "\x00" in target or not target:
                raise UnsafeMember(
                    f"Refused symlink {member.name!r}: its target is empty or contains a NUL byte."
                )
            if not self._resolves_inside(rel, target):
                raise UnsafeMember(
                    f"Refused symlink {member.name!r} -> {target!r}: it points outside the target folder."
                )
            os.symlink(target, path)
            if self.as_root:
                os.lchown(path, uid, gid)
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
            self.result.symlinks += 1
            self.result.names.append(rel)
        elif member.islnk():
            target_rel = safe_name(member.linkname, "hard link target")
            if not target_rel:
                raise UnsafeMember(f"Refused hard link {member.name!r}: it has no target.")
            self._ensure_parents(target_rel, member.name, create=False)
            source = f"{self.root}/{target_rel}"
            try:
                st = os.lstat(source)
            except FileNotFoundError:
                raise UnsafeMember(
                    f"Refused hard link {member.name!r} -> {member.linkname!r}: the target is not a file "
                    "restored from this archive."
                ) from None
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeMember(
                    f"Refused hard link {member.name!r} -> {member.linkname!r}: the target is not a regular file."
                )
            os.link(source, path, follow_symlinks=False)
            self.result.hardlinks += 1
            self.result.names.append(rel)
        else:
            self._file(tar, member, path, rel, mode, uid, gid, mtime)

    def _clear(self, path: str, rel: str, member: tarfile.TarInfo) -> None:
        """A name repeated in the archive: the later non-folder replaces the earlier one."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if member.isdir():
                return
            raise UnsafeMember(
                f"Refused member {member.name!r}: a folder of that name came earlier in the archive."
            )
        if member.isdir():
            raise UnsafeMember(
                f"Refused folder {member.name!r}: a file of that name came earlier in the archive."
            )
        os.unlink(path)

    def _file(
        self,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        path: str,
        rel: str,
        mode: int,
        uid: int,
        gid: int,
        mtime: int,
    ) -> None:
        src = tar.extractfile(member)
        assert src is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ELOOP):
                raise UnsafeMember(
                    f"Refused member {member.name!r}: something already exists at its name."
                ) from exc
            raise
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(COPY):
                out.write(chunk)
                self.result.bytes += len(chunk)
            out.flush()
            if self.as_root:
                os.fchown(fd, uid, gid)  # before chmod: chown clears setuid bits
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime, mtime))
        self.result.files += 1
        self.result.names.append(rel)


def apply_dir_meta(path: str, meta: DirMeta, as_root: bool) -> None:
    """Owner, mode and mtime of a restored folder (call deepest first, after its content)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return
    if as_root:
        os.lchown(path, meta.uid, meta.gid)
    os.chmod(path, meta.mode)
    os.utime(path, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)


def under(name: str, selection: str) -> bool:
    return not selection or name == selection or name.startswith(selection + "/")


def normalize_selection(path: str) -> str:
    """``--path`` as a member name: leading and trailing slashes dropped, no ``..``."""
    text = path.strip()
    rel = posixpath.normpath("/" + text.lstrip("/")).lstrip("/") if text.strip("/") else ""
    if ".." in text.split("/"):
        from ...errors import ConfigError

        raise ConfigError(
            f"--path {path!r} contains '..'.",
            hint="Give a path as stored, e.g. etc/nginx/sites-enabled.",
        )
    return rel
