"""``FilesSource``: configured paths as one pax tar, streamed through the pipeline.

The tar is written by a producer thread into an ``os.pipe``; the artifact's stream is the
pipe's read end, so memory stays at a pipe buffer plus tarfile's record whatever the size,
and nothing is staged on disk. The thread hashes every file as it copies it, so the
manifest's file list (``facts["files"]``) describes exactly the bytes in the tar.

Members are named like GNU tar names them: the absolute path without its leading ``/``
(``etc/nginx/sites-enabled/default``). Modes, owners (uid/gid and names), nanosecond mtimes
(pax ``mtime`` records), symlinks and hard links are kept; sockets, fifos and devices are
skipped with a warning. A file that changes while it is copied keeps the size it had when
opened (padded with zeros if it shrank, cut if it grew) and is named in the warnings, as
GNU tar does ("file changed as we read it").

``content_digest()`` is the pre-pass: it walks and hashes without writing a tar, so the
backup operation can record an unchanged tree without streaming it again
(``operations.unchanged``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from ...errors import DumpFailed, PosterityError
from ..base import Artifact, Source
from . import entries
from . import scan as sc
from .config import FilesConfig
from .excludes import Excluder

log = logging.getLogger(__name__)

ARTIFACT = "files.tar"
TAR_KIND = "tar-pax"


def ns_text(ns: int) -> str:
    """Nanoseconds as an exact pax decimal (``1700000000.123456789``)."""
    sign = "-" if ns < 0 else ""
    a = abs(ns)
    return f"{sign}{a // 1_000_000_000}.{a % 1_000_000_000:09d}"


class FileReadFailed(DumpFailed):
    """A file could not be read while its bytes were being written into the tar."""


def read_failed(path: str, name: str, at: int, size: int, exc: OSError) -> FileReadFailed:
    """The error for a read that failed after the file's tar header was written: the tar
    cannot skip the file any more (the header promised ``size`` bytes), so the backup stops,
    naming the file as it is on disk and as it is stored."""
    reason = exc.strerror or str(exc)
    code = f" (errno {exc.errno})" if exc.errno else ""
    return FileReadFailed(
        f"Reading {path} (stored as {name}) failed at byte {at} of {size}: {reason}{code}; "
        "the tar was stopped and nothing was committed.",
        hint=(
            f"Earlier backups are intact. Find out why {path} cannot be read (a disk error: see `dmesg`; a "
            "kernel file under /proc or /sys is not a real file), then fix it, or leave it out (remove it from "
            "the source's paths, or add it to exclude), and run the backup again."
        ),
    )


class _ExactReader(io.RawIOBase):
    """Exactly ``size`` bytes of ``fh`` (zero-padded if it shrank), hashed as they pass.

    ``path`` and ``name`` (the file on disk, its tar member) name it if a read fails."""

    def __init__(self, fh: IO[bytes], size: int, path: str = "", name: str = "") -> None:
        self._fh = fh
        self._size = size
        self._left = size
        self._path, self._name = path, name
        self._read = 0  # bytes read from the file so far
        self.h = hashlib.sha256()
        self.short = False

    def read_more(self, n: int) -> bytes:
        """Up to ``n`` bytes of the file; a failed read raises ``FileReadFailed`` naming it."""
        try:
            data = self._fh.read(n) or b""
        except OSError as exc:
            raise read_failed(self._path, self._name, self._read, self._size, exc) from exc
        self._read += len(data)
        return data

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        # tarfile.copyfileobj insists on full reads, so loop, then pad what is missing.
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        buf = bytearray()
        while len(buf) < want and not self.short:
            data = self.read_more(want - len(buf))
            if not data:
                self.short = True
                break
            buf += data
        if len(buf) < want:
            buf += bytes(want - len(buf))
        self._left -= want
        self.h.update(buf)
        return bytes(buf)


class TarWriter:
    """Writes the tar of the configured paths into ``out``, recording each member."""

    def __init__(self, roots: list[str], exclude: list[str]) -> None:
        self.roots = roots
        self.excluded = Excluder(exclude)
        self.warnings = sc.Warnings()
        self.records: list[dict[str, Any]] = []
        self.total = 0
        self._links: dict[tuple[int, int], entries.Entry] = {}

    def write(self, out: IO[bytes]) -> None:
        with tarfile.open(
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
        ) as tar:
            for path, st in sc.walk(self.roots, self.excluded, self.warnings):
                self._add(tar, path, st)

    def _info(self, name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname, ti.gname = entries.user_name(st.st_uid), entries.group_name(st.st_gid)
        ti.mtime = st.st_mtime_ns // 1_000_000_000
        ti.pax_headers = {"mtime": ns_text(st.st_mtime_ns)}
        return ti

    def _add(self, tar: tarfile.TarFile, path: str, st: os.stat_result) -> None:
        name = entries.member_name(path)
        kind = entries.classify(st)
        if kind is None:
            self.warnings.add(f"{path} is a {entries.special_kind(st)}; skipped")
            return
        if kind == entries.DIR:
            tar.addfile(self._info(name, st, tarfile.DIRTYPE))
            self.records.append(entries.entry_from_stat(name, st, entries.DIR).record())
        elif kind == entries.SYMLINK:
            try:
                target = os.readlink(path)
            except OSError as exc:
                self.warnings.skipped(path, exc)
                return
            ti = self._info(name, st, tarfile.SYMTYPE)
            ti.linkname = target
            tar.addfile(ti)
            e = entries.entry_from_stat(name, st, entries.SYMLINK)
            e.target = target
            self.records.append(e.record())
        else:
            self._add_file(tar, path, name, st)

    def _add_file(self, tar: tarfile.TarFile, path: str, name: str, st: os.stat_result) -> None:
        first = self._links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None:
            ti = self._info(name, st, tarfile.LNKTYPE)
            ti.linkname = first.path
            tar.addfile(ti)
            e = entries.entry_from_stat(name, st, entries.HARDLINK)
            e.sha256, e.target, e.size = first.sha256, first.path, first.size
            self.records.append(e.record())
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.warnings.skipped(path, exc)
            return
        with os.fdopen(fd, "rb", buffering=0) as fh:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                self.warnings.add(f"{path} changed type during the backup; skipped")
                return
            ti = self._info(name, fst, tarfile.REGTYPE)
            ti.size = fst.st_size
            reader = _ExactReader(fh, fst.st_size, path, name)
            tar.addfile(ti, reader)
            grew = not reader.short and reader.read_more(1) != b""
            after = os.fstat(fd)
            if reader.short:
                self.warnings.add(f"{path} shrank while it was read; stored padded with zeros")
            elif grew:
                self.warnings.add(
                    f"{path} grew while it was read; stored its first {fst.st_size} bytes"
                )
            elif after.st_mtime_ns != fst.st_mtime_ns:
                self.warnings.add(
                    f"{path} changed while it was read; the stored copy may mix old and new"
                )
        e = entries.entry_from_stat(name, fst, entries.FILE)
        e.sha256 = reader.h.hexdigest()
        self.total += e.size
        if fst.st_nlink > 1:
            self._links[(fst.st_dev, fst.st_ino)] = e
        self.records.append(e.record())


class _Producer:
    """Runs a ``TarWriter`` in a thread writing into a pipe; ``stream`` is the read end."""

    def __init__(self, writer: TarWriter) -> None:
        self.writer = writer
        rfd, wfd = os.pipe()
        self.stream: IO[bytes] = os.fdopen(rfd, "rb")
        self._wfile: IO[bytes] = os.fdopen(wfd, "wb")
        self._error: BaseException | None = None
        self._aborted = False
        self._thread = threading.Thread(target=self._run, name="posterity-tar", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.writer.write(self._wfile)
        except BaseException as exc:
            self._error = exc
        finally:
            try:
                self._wfile.close()
            except OSError as exc:  # the reader went away (abort): nothing to flush to
                if self._error is None and not self._aborted:
                    self._error = exc

    def finish(self) -> None:
        self._thread.join()
        self.stream.close()
        if self._error is not None:
            exc = self._error
            if isinstance(exc, PosterityError):
                raise exc
            raise DumpFailed(f"Writing the tar failed: {exc}.") from exc

    def abort(self) -> None:
        self._aborted = True
        self.stream.close()  # the writer gets EPIPE and stops
        self._thread.join()


class FilesSource(Source):
    kind = "files"
    config: FilesConfig

    def __init__(self, name: str, config: FilesConfig) -> None:
        super().__init__(name, config)
        self._facts: dict[str, Any] = {}
        self._expected: int | None = None

    def check(self) -> dict[str, Any]:
        sc.check_roots(self.config.paths)
        return {"paths": list(self.config.paths)}

    def _set_facts(self, records: list[dict[str, Any]], warnings: sc.Warnings, at: datetime) -> str:
        roots = sc.top_roots(self.config.paths)
        digest = entries.digest(roots, records)
        counts = entries.summary(records)
        self._facts = {
            "paths": roots,
            "exclude": list(self.config.exclude),
            "content_digest": digest,
            "consistency_marker": {"files_digest": digest, "time": at.isoformat()},
            "file_count": counts["files"] + counts["hardlinks"],
            "dir_count": counts["dirs"],
            "symlink_count": counts["symlinks"],
            "total_size": counts["bytes"],
            "files": records,
            "warnings": warnings.as_facts(),
        }
        return digest

    def content_digest(self) -> str:
        """The pre-pass: walk and hash, no tar. Sets ``facts()`` for an unchanged manifest."""
        at = datetime.now(UTC)
        result = sc.scan(self.config.paths, self.config.exclude)
        self._expected = result.total_size
        return self._set_facts(result.records, result.warnings, at)

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def dump(self) -> Iterator[Artifact]:
        at = datetime.now(UTC)
        writer = TarWriter(self.config.paths, self.config.exclude)
        producer = _Producer(writer)

        def finish() -> None:
            producer.finish()
            self._set_facts(writer.records, writer.warnings, at)

        yield Artifact(
            name=ARTIFACT,
            kind=TAR_KIND,
            stream=producer.stream,
            expected_size=(self._expected + (1 << 20)) if self._expected is not None else None,
            facts={"format": "pax", "members": "absolute paths without the leading /"},
            finish=finish,
            abort=producer.abort,
        )

    def by_hand(self, manifest: Any) -> list[str]:
        cmds = []
        for art in manifest.artifacts:
            if art.kind == TAR_KIND:
                cmds.append(
                    f'mkdir -p DIR && rclone cat "$REPO/{art.key}" | age -d -i key.txt | zstd -d'
                    " | tar -xpf - -C DIR   # GNU tar; as root it restores owners too"
                )
        return cmds
