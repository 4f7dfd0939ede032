"""Checks that a decoded artifact is what its kind says it is, read to its last byte.

``verify --read-data`` decodes every object (sha256, age, zstd frame checksum) into the
checker registered for the artifact's kind. A checker is a sink: ``write(chunk)`` for each
decoded chunk, then ``finish()``, which returns facts for the report or raises
``IntegrityError`` naming what is wrong. ``abort()`` releases it when decoding failed.

A new artifact kind registers its checker with ``register_content_check(kind, factory)``;
a kind without one is still fully decoded (the zstd frame checksum covers every byte).

Why the pg_dump check runs ``pg_restore --file=/dev/null`` and not only ``--list``:
measured on PostgreSQL 15, ``pg_restore --list`` reads just the table of contents and
exits 0 on an archive cut in half; converting the whole archive to a (discarded) script
reads every data block, so a cut or garbled archive fails.
"""

from __future__ import annotations

import codecs
import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from .. import pipes
from ..errors import IntegrityError, PosterityError
from ..kinds import PG_DUMP_CUSTOM_DATA
from ..repository import ArtifactRecord, Manifest


class ContentInvalid(IntegrityError):
    """An object decodes, but is not a valid artifact of its kind."""


@dataclass(frozen=True)
class ContentFacts:
    """What a checker found in a valid artifact (``verify --json`` prints ``to_dict()`` under
    ``checked``): in words, its counts (toc_entries, table_data, entries, documents), and why
    no check ran when none could."""

    content: str
    counts: dict[str, int] = field(default_factory=dict)
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"content": self.content, **self.counts}
        if self.warning is not None:
            out["warning"] = self.warning
        return out


class ContentCheck(Protocol):
    def write(self, b: bytes) -> int: ...
    def finish(self) -> ContentFacts: ...
    def abort(self) -> None: ...


Factory = Callable[[ArtifactRecord, Manifest], ContentCheck]

_EXACT: dict[str, Factory] = {}
_TAR_KIND = re.compile(r"(^|[-_.])tar($|[-_.])")


def register_content_check(kind: str, factory: Factory) -> None:
    _EXACT[kind] = factory


def content_check_for(artifact: ArtifactRecord, manifest: Manifest) -> ContentCheck:
    factory = _EXACT.get(artifact.kind)
    if factory is None and _TAR_KIND.search(artifact.kind):
        factory = _tar_check
    if factory is None:
        return CountOnly()
    return factory(artifact, manifest)


class CountOnly:
    """No kind-specific check: the bytes are only decoded and counted."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, b: bytes) -> int:
        self.n += len(b)
        return len(b)

    def finish(self) -> ContentFacts:
        return ContentFacts("decoded (no check for this kind)")

    def abort(self) -> None:
        pass


class _Feeder:
    """One child process reading the decoded stream on stdin; output and errors to temp files."""

    def __init__(self, argv: list[str]) -> None:
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by wait()/kill()
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by wait()/kill()
        self.stopped_early = False  # it closed its stdin before the end (pg_restore --list does)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self.out, stderr=self.err)
        assert self.proc.stdin is not None
        pipes.grow(self.proc.stdin)
        self.stdin: IO[bytes] | None = self.proc.stdin

    def write(self, b: bytes) -> None:
        if self.stdin is None:
            return
        try:
            self.stdin.write(b)
        except BrokenPipeError:
            self.stopped_early = True
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            try:
                self.stdin.close()
            except BrokenPipeError:
                self.stopped_early = True
            self.stdin = None

    def wait(self) -> tuple[int, str, str]:
        self._close_stdin()
        rc = self.proc.wait()
        self.out.seek(0)
        self.err.seek(0)
        out = self.out.read().decode(errors="replace")
        err = self.err.read().decode(errors="replace")
        self.out.close()
        self.err.close()
        return rc, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._close_stdin()
        self.proc.wait()
        self.out.close()
        self.err.close()


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "no message"


class PgArchiveCheck:
    """A pg_dump custom-format archive: the whole archive parses, and every table counted
    at backup time has its definition in the table of contents."""

    def __init__(self, artifact: ArtifactRecord, manifest: Manifest) -> None:
        from ..sources.postgres.tools import find_binary

        self.key = artifact.key
        major = int(manifest.facts.get("server_version_num") or 0) // 10000 or None
        pg_restore = str(find_binary("pg_restore", major))
        self.expected_tables = sorted((manifest.facts.get("row_counts") or {}).keys())
        self.needles: tuple[str, ...] = (" TABLE {} {} ", " MATERIALIZED VIEW {} {} ")
        if artifact.kind == PG_DUMP_CUSTOM_DATA:  # a split backup's data part: its tables' rows
            patterns = artifact.facts.get("exclude_table_data")  # pg_dump patterns: not matched here
            self.expected_tables = [] if patterns else sorted(artifact.facts.get("tables") or [])
            self.needles = (" TABLE DATA {} {} ",)
        self.reader = _Feeder([pg_restore, "--file=/dev/null"])
        try:
            self.lister = _Feeder([pg_restore, "--list"])
        except BaseException:
            self.reader.kill()
            raise

    def write(self, b: bytes) -> int:
        self.reader.write(b)
        self.lister.write(b)
        return len(b)

    def finish(self) -> ContentFacts:
        rc_read, _, err_read = self.reader.wait()
        rc_list, listing, err_list = self.lister.wait()
        if rc_read != 0 or self.reader.stopped_early:
            raise ContentInvalid(
                f"{self.key} decodes, but pg_restore cannot read the archive: {_last_lines(err_read)}."
            )
        if rc_list != 0:
            raise ContentInvalid(f"{self.key}: pg_restore --list failed: {_last_lines(err_list)}.")
        entries = [ln for ln in listing.splitlines() if ln and not ln.startswith(";")]
        missing = []
        for name in self.expected_tables:
            schema, _, table = name.partition(".")
            needles = [n.format(schema, table) for n in self.needles]
            if not any(n in ln for ln in entries for n in needles):
                missing.append(name)
        if missing:
            raise ContentInvalid(
                f"{self.key}: the archive has no {'rows' if len(self.needles) == 1 else 'definition'} of "
                f"{len(missing)} table(s) {'it should hold' if len(self.needles) == 1 else 'counted at backup time'}: "
                f"{', '.join(missing[:10])}."
            )
        data = sum(1 for ln in entries if " TABLE DATA " in ln)
        return ContentFacts("pg_restore read the whole archive", {"toc_entries": len(entries), "table_data": data})

    def abort(self) -> None:
        self.reader.kill()
        self.lister.kill()


class SqlScriptCheck:
    """pg_dumpall --globals-only output: UTF-8 text with pg_dumpall's opening and closing lines."""

    HEAD = "-- PostgreSQL database cluster dump"
    TAIL = "-- PostgreSQL database cluster dump complete"

    def __init__(self, artifact: ArtifactRecord, manifest: Manifest) -> None:
        self.key = artifact.key
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._head = ""
        self._tail = ""
        self._bad: str | None = None
        self.n = 0

    def write(self, b: bytes) -> int:
        # Never raise here: the caller is the decrypter's callback. Problems wait for finish().
        if self._bad is not None:
            return len(b)
        try:
            text = self._decoder.decode(bytes(b))
        except UnicodeDecodeError as exc:
            self._bad = f"{self.key} is not UTF-8 SQL text (byte {self.n + exc.start})."
            return len(b)
        if len(self._head) < 4096:
            self._head += text[: 4096 - len(self._head)]
        self._tail = (self._tail + text)[-4096:]
        self.n += len(b)
        return len(b)

    def finish(self) -> ContentFacts:
        if self._bad is not None:
            raise ContentInvalid(self._bad)
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ContentInvalid(f"{self.key} ends inside a UTF-8 character.") from None
        if self.HEAD not in self._head:
            raise ContentInvalid(f"{self.key} does not start like pg_dumpall output.")
        if self.TAIL not in self._tail:
            raise ContentInvalid(
                f"{self.key} lacks pg_dumpall's closing line: the script is incomplete."
            )
        return ContentFacts("complete pg_dumpall script")

    def abort(self) -> None:
        pass


class TarCheck:
    """A tar archive (optionally gzip-compressed inside): ``tar -t`` lists it to the end."""

    def __init__(self, artifact: ArtifactRecord, manifest: Manifest, gzip: bool = False) -> None:
        self.key = artifact.key
        self.feeder = _Feeder(["tar", "-tz" if gzip else "-t", "-f", "-"])

    def write(self, b: bytes) -> int:
        self.feeder.write(b)
        return len(b)

    def finish(self) -> ContentFacts:
        rc, out, err = self.feeder.wait()
        if rc != 0 or self.feeder.stopped_early:
            raise ContentInvalid(
                f"{self.key} decodes, but is not a complete tar archive: {_last_lines(err)}."
            )
        return ContentFacts("tar listing", {"entries": sum(1 for ln in out.splitlines() if ln)})

    def abort(self) -> None:
        self.feeder.kill()


class NdjsonExportCheck:
    """A Posterity Meilisearch export: the header line, then one JSON document per line, as
    many as the manifest counted."""

    def __init__(self, artifact: ArtifactRecord, manifest: Manifest) -> None:
        self.key = artifact.key
        self.expected = artifact.facts.get("documents")
        self._partial = b""
        self._header: bytes | None = None
        self.documents = 0
        self._bad: str | None = None

    def write(self, b: bytes) -> int:
        if self._bad is None:  # never raise here (decrypter callback); finish() reports
            lines = (self._partial + bytes(b)).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._line(line)
        return len(b)

    def _line(self, line: bytes) -> None:
        if self._bad is not None:
            return
        if self._header is None:
            self._header = line
            return
        try:
            json.loads(line)
        except ValueError:
            self._bad = f"{self.key}: document {self.documents + 1} is not JSON."
            return
        self.documents += 1

    def finish(self) -> ContentFacts:
        from ..sources.meilisearch.export import parse_header

        if self._partial:
            self._bad = (
                self._bad or f"{self.key} ends in the middle of a line: the export is incomplete."
            )
        if self._bad:
            raise ContentInvalid(self._bad)
        try:
            parse_header(self._header or b"", self.key)
        except PosterityError as exc:
            raise ContentInvalid(exc.message) from None
        if isinstance(self.expected, int) and self.documents != self.expected:
            raise ContentInvalid(
                f"{self.key} holds {self.documents} documents, its manifest counted {self.expected}."
            )
        return ContentFacts("Meilisearch export", {"documents": self.documents})

    def abort(self) -> None:
        pass


class JsonCheck(CountOnly):
    """One JSON document (e.g. Meilisearch metadata)."""

    def __init__(self, artifact: ArtifactRecord, manifest: Manifest) -> None:
        super().__init__()
        self.key = artifact.key
        self._parts: list[bytes] = []

    def write(self, b: bytes) -> int:
        if self.n < (64 << 20):
            self._parts.append(bytes(b))
        return super().write(b)

    def finish(self) -> ContentFacts:
        try:
            json.loads(b"".join(self._parts))
        except ValueError as exc:
            raise ContentInvalid(f"{self.key} is not valid JSON ({exc}).") from None
        return ContentFacts("JSON document")


def _tar_check(artifact: ArtifactRecord, manifest: Manifest) -> ContentCheck:
    return TarCheck(artifact, manifest)


def _tar_gz_check(artifact: ArtifactRecord, manifest: Manifest) -> ContentCheck:
    return TarCheck(artifact, manifest, gzip=True)


def _pg_archive_check(artifact: ArtifactRecord, manifest: Manifest) -> ContentCheck:
    try:
        return PgArchiveCheck(artifact, manifest)
    except PosterityError:  # pg_restore not installed: decode only, and say so
        return _Unchecked("pg_restore is not installed; the archive was decoded but not parsed")


class _Unchecked(CountOnly):
    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why

    def finish(self) -> ContentFacts:
        return ContentFacts("decoded only", warning=self.why)


register_content_check("pg_dump-custom", _pg_archive_check)
register_content_check("pg_dump-custom-schema", _pg_archive_check)  # split backups (parallel_dump)
register_content_check("pg_dump-custom-data", _pg_archive_check)
register_content_check("pg_dumpall-globals", SqlScriptCheck)
# Meilisearch dumps and snapshots are gzip-compressed tars.
register_content_check("meilisearch-dump", _tar_gz_check)
register_content_check("meilisearch-snapshot", _tar_gz_check)
register_content_check("meilisearch-export", NdjsonExportCheck)
register_content_check("meilisearch-metadata", JsonCheck)
