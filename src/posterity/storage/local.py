"""A folder on a local (or mounted) filesystem as an object store.

Writes go to a temporary file under ``.tmp/`` that is fsynced and then hard-linked into
place: ``link(2)`` fails if the name exists, so create-if-absent is atomic for objects of
any size, and a crash leaves at most a temporary file, never a partial object.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from ..errors import LocalResourceError, ObjectExists, ObjectNotFound, StorageError
from .base import ObjectInfo, ObjectStore

CHUNK = 1 << 20


def _os_error(exc: OSError, doing: str, location: str) -> StorageError | LocalResourceError:
    """The folder *is* the repository: a folder we may not write is a storage problem
    (exit 4, like a bucket the credentials may not write), a full disk a local one."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalResourceError(f"No space left on the device holding {location}.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        import getpass

        return StorageError(
            f"{doing} in {location} failed: permission denied ({exc.filename or exc.strerror}).",
            hint=f"User {getpass.getuser()} must be able to write the repository folder: e.g. "
            f"`chown -R {getpass.getuser()} {location.removeprefix('file://')}` (for archive_command, the "
            "postgres user), or point [repository] url at a folder it owns.",
        )
    return StorageError(f"{doing} in {location} failed: {exc.strerror or exc}.")


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"Invalid object key {key!r}.")


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def _fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, key, data, *, if_absent=True, part_size=None) -> int:
        target = self._path(key)
        if if_absent and target.exists():
            raise ObjectExists(f"Object {key} already exists in {self.location}.")
        tmpdir = self.root / ".tmp"
        try:
            tmpdir.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmpname = tempfile.mkstemp(dir=tmpdir, prefix="put-")
        except FileNotFoundError as exc:
            raise StorageError(f"Cannot write to {self.location}: {exc.strerror}.") from exc
        except OSError as exc:
            raise _os_error(exc, f"Writing {key}", self.location) from exc
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if if_absent:
                try:
                    os.link(tmpname, target)
                except FileExistsError as exc:
                    raise ObjectExists(f"Object {key} already exists in {self.location}.") from exc
            else:
                os.replace(tmpname, target)
            self._fsync_dir(target.parent)
        except OSError as exc:
            raise _os_error(exc, f"Writing {key}", self.location) from exc
        finally:
            if os.path.exists(tmpname):
                os.unlink(tmpname)
        return written

    def get(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"Object {key} does not exist in {self.location}.") from exc
        except OSError as exc:
            raise _os_error(exc, f"Reading {key}", self.location) from exc
        return self._stream(fh)

    @staticmethod
    def _stream(fh) -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error(exc, f"Reading {key}", self.location) from exc
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        # Walk only the folder the prefix names, not the whole tree.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".tmp" or rel_dir.startswith(".tmp" + os.sep):
                dirnames[:] = []
                continue
            dirnames.sort()
            for name in sorted(filenames):
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    info = self.stat(key)
                    if info is not None:
                        yield info

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _os_error(exc, f"Deleting {key}", self.location) from exc
            # Remove folders left empty, up to the root.
            parent = path.parent
            while parent != self.root:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def check(self) -> None:
        if not self.root.exists():
            parent = self.root.parent
            if not parent.is_dir():
                raise StorageError(
                    f"The folder {parent} does not exist.",
                    hint="Create it or fix [repository] url.",
                )
