"""Extract a tar stream into a directory as its bytes arrive, safely and without copies.

Why not ``tarfile.open(mode="r|")``: its stream reader joins and slices a buffer on every
read, so each byte of a 2 GB base backup is copied three more times in Python, and it
needs a pipe (two more copies in the kernel) between the decoding thread and the reader.
Here the decoded chunks are parsed in place and handed to ``os.write`` as memoryview slices.

Safety is the standard library's: every member passes ``tarfile.data_filter`` (no absolute
paths, nothing outside the target — symlinks already on disk included, no device files, no
links pointing out, no setuid bits, no group/other write) before anything is created.
On a Python without it (Debian 12's 3.11.2: it came in 3.11.4) ``_data_filter`` applies the
same rules. Regular files are opened with ``O_NOFOLLOW``. Hard links, sparse files and other rare member
types are refused: ``pg_basebackup`` writes none of them.
"""

from __future__ import annotations

import copy
import os
import tarfile
from pathlib import Path

from ...errors import RestoreFailed

BLOCK = 512
_REG = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class _Unsafe(Exception):
    pass


def _data_filter(info: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """``tarfile.data_filter``'s rules for Pythons older than 3.11.4, which lack it."""
    name = info.name
    if name.startswith("/") or os.path.isabs(name):
        raise _Unsafe(f"{name!r} is an absolute path")
    real_dest = os.path.realpath(dest)
    target = os.path.realpath(os.path.join(real_dest, name))
    if os.path.commonpath([real_dest, target]) != real_dest:
        raise _Unsafe(f"{name!r} would be extracted outside the target")
    if info.issym():
        if os.path.isabs(info.linkname):
            raise _Unsafe(f"{name!r} is a symlink to the absolute path {info.linkname!r}")
        link = os.path.realpath(os.path.join(os.path.dirname(target), info.linkname))
        if os.path.commonpath([real_dest, link]) != real_dest:
            raise _Unsafe(f"{name!r} is a symlink pointing outside the target")
    if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
        raise _Unsafe(f"{name!r} is a special file")
    mode = info.mode
    if mode is not None:
        mode &= 0o755  # no setuid/setgid/sticky, no group/other write
        if info.isreg() and not mode & 0o100:
            mode &= ~0o111
    out = copy.copy(info)
    out.mode = mode
    return out


_DATA_FILTER = getattr(tarfile, "data_filter", None)
_FILTER_ERROR: tuple[type[Exception], ...] = (_Unsafe, getattr(tarfile, "FilterError", _Unsafe))


class TarExtractor:
    """Feed tar bytes with ``feed()`` in chunks of any size; call ``close()`` at the end."""

    def __init__(self, dest: Path, uid: int | None = None, gid: int | None = None) -> None:
        self.dest = Path(dest)
        self._dest_str = str(self.dest.resolve())
        self.uid, self.gid = uid, gid
        self.members = 0
        self.bytes = 0
        self.ended = False
        self._header = bytearray()
        self._left = 0  # bytes of the current member (data + padding) still to come
        self._data_left = 0
        self._fd: int | None = None
        self._special: bytearray | None = None
        self._special_type = b""
        self._long_name: str | None = None
        self._long_link: str | None = None

    def feed(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        while len(mv):
            if self.ended:
                return  # the zero blocks and record padding after the end marker
            if self._left:
                k = min(self._left, len(mv))
                real = min(k, self._data_left)
                if real:
                    piece = mv[:real]
                    if self._fd is not None:
                        self._write(piece)
                    elif self._special is not None:
                        self._special += piece
                    self._data_left -= real
                self._left -= k
                mv = mv[k:]
                if not self._left:
                    self._end_member()
                continue
            need = BLOCK - len(self._header)
            self._header += mv[:need]
            mv = mv[need:]
            if len(self._header) == BLOCK:
                header = bytes(self._header)
                self._header.clear()
                self._start_member(header)

    def _write(self, piece: memoryview) -> None:
        assert self._fd is not None
        while len(piece):
            n = os.write(self._fd, piece)
            piece = piece[n:]
            self.bytes += n

    def _start_member(self, header: bytes) -> None:
        if header == b"\0" * BLOCK:
            self.ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(header, tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError as exc:
            raise RestoreFailed(f"The base backup's tar stream is damaged: {exc}.") from exc
        self._data_left = info.size
        self._left = (info.size + BLOCK - 1) // BLOCK * BLOCK
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE):
            self._special, self._special_type = bytearray(), info.type
        else:
            if self._long_name is not None:
                info.name, self._long_name = self._long_name, None
            if self._long_link is not None:
                info.linkname, self._long_link = self._long_link, None
            self._create(info)
        if not self._left:
            self._end_member()

    def _create(self, info: tarfile.TarInfo) -> None:
        try:
            member = (_DATA_FILTER or _data_filter)(info, self._dest_str)
        except _FILTER_ERROR as exc:
            raise RestoreFailed(f"The base backup holds an unsafe member, refused: {exc}.") from exc
        if member is None:
            return
        path = os.path.join(self._dest_str, member.name)
        self.members += 1
        if member.type in _REG:
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                os.makedirs(parent, mode=0o700, exist_ok=True)
            mode = (member.mode if member.mode is not None else 0o600) & 0o777
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, mode)
            if self.uid is not None:
                os.fchown(fd, self.uid, self.gid if self.gid is not None else -1)
            self._fd = fd
        elif member.type == tarfile.DIRTYPE:
            if os.path.islink(path):
                raise RestoreFailed(f"The base backup's directory {member.name} would replace a symlink; refused.")
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
            self._chown(path)
        elif member.type == tarfile.SYMTYPE:
            os.symlink(member.linkname, path)
            self._chown(path)
        else:
            raise RestoreFailed(
                f"The base backup holds {member.name!r} of tar type {member.type!r}; only files, folders and "
                "symlinks are restored.")

    def _chown(self, path: str) -> None:
        if self.uid is not None:
            os.lchown(path, self.uid, self.gid if self.gid is not None else -1)

    def _end_member(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._special is not None:
            raw = bytes(self._special)
            if self._special_type == tarfile.GNUTYPE_LONGNAME:
                self._long_name = _text(raw.split(b"\0", 1)[0])
            elif self._special_type == tarfile.GNUTYPE_LONGLINK:
                self._long_link = _text(raw.split(b"\0", 1)[0])
            elif self._special_type == tarfile.XHDTYPE:
                for key, value in _pax_records(raw):
                    if key == "path":
                        self._long_name = value
                    elif key == "linkpath":
                        self._long_link = value
                    elif key == "size":
                        raise RestoreFailed("The base backup uses pax sizes (files over 8 GiB); not supported.")
            self._special = None

    def close_quietly(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.ended or self._left:
            raise RestoreFailed("The base backup's tar stream ended early (no end-of-archive marker).")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _pax_records(raw: bytes) -> list[tuple[str, str]]:
    """``"<length> key=value\\n"`` records; lengths count bytes."""
    out = []
    i = 0
    while i < len(raw):
        space = raw.find(b" ", i)
        if space < 0:
            break
        try:
            length = int(raw[i:space])
        except ValueError as exc:
            raise RestoreFailed("The base backup's tar stream has a damaged pax header.") from exc
        key, _, value = raw[space + 1 : i + length - 1].partition(b"=")
        out.append((_text(key), _text(value)))
        i += length
    return out
