"""The WAL archive in the repository: push (archive_command), fetch (restore_command), listing.

Push writes the file's record first and its payload second, both create-if-absent:

1. the record (``<name>.json``: raw size and sha256, the stored size and sha256, the stage
   specs, host, cluster system identifier) claims the name. If a record already exists, its
   raw sha256 decides: the same content is a retry (PostgreSQL re-archives when it did not see
   a success) and succeeds; different content means two clusters archive into one source,
   and the push fails loudly, every time, so PostgreSQL keeps the file and says so.
2. the payload (``<name>.zst.age``, age(zstd(file))) is written; only then does push return.

Why the record first: the push host holds no private key, so it can never compare an
existing payload's content; the record is what makes "same content?" answerable, so it must
exist before any payload can. A push that died between the two leaves a record without a
payload; the retry finds the matching record and writes the payload (a fresh encryption,
so the stored sha256 in the record may then differ; fetch falls back to the raw sha256,
which is the one that matters). A file counts as archived only when both exist.

Fetch is the reverse and verifies the stored bytes' sha256 and then the restored file's raw
sha256 before it renames the file into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import (
    ChecksumMismatch,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    PosterityError,
    StorageError,
)
from ..pipeline.encode import encode_bytes
from ..pipeline.stages import Stages
from ..storage import ObjectInfo, ObjectStore
from . import walnames as wal

log = logging.getLogger(__name__)

RECORD_FORMAT = 1


class WalConflict(ObjectExists):
    """A WAL file of this name is already archived with different content."""

    exit_code = 4
    default_hint = (
        "Two clusters are archiving into one source. Give each cluster its own [sources.NAME] "
        "(archive_command = 'posterity wal push --source NAME %p'), or stop the other one's archive_command."
    )


class WalNotArchived(ObjectNotFound):
    """The WAL file is not in the archive."""

    default_hint = "Nothing to do if PostgreSQL was only probing; otherwise run `posterity wal status`."


@dataclass
class PushResult:
    name: str
    status: str  # "stored" | "already archived" | "completed" (an earlier push had stopped half way)
    raw_size: int
    size: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "raw_size": self.raw_size, "size": self.size,
                "seconds": round(self.seconds, 4)}


def system_identifier(data_directory: Path | str = ".") -> str | None:
    """The cluster's system identifier, read from ``global/pg_control`` (its first 8 bytes)."""
    try:
        with open(Path(data_directory) / "global" / "pg_control", "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return str(struct.unpack("=Q", head)[0]) if len(head) == 8 else None


def _mtime(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return None


def write_file(dest: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``dest`` through a temporary name, so ``dest`` is never partial."""
    tmp = dest.with_name(f".{dest.name}.posterity-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- listing ---------------------------------------------------------------------------------


@dataclass
class ArchivedFile:
    name: str
    kind: str
    timeline: int
    payload: ObjectInfo | None = None
    record: ObjectInfo | None = None

    @property
    def complete(self) -> bool:
        return self.payload is not None and self.record is not None

    @property
    def archived_at(self) -> datetime | None:
        """When the payload was stored (the store's modification time)."""
        return self.payload.modified if self.payload else None


@dataclass
class ArchiveListing:
    source: str
    files: dict[str, ArchivedFile] = field(default_factory=dict)

    def complete(self, kind: str | None = None) -> list[ArchivedFile]:
        return sorted((f for f in self.files.values() if f.complete and (kind is None or f.kind == kind)),
                      key=lambda f: f.name)

    def has(self, name: str) -> bool:
        f = self.files.get(name)
        return f is not None and f.complete

    def timelines(self) -> list[int]:
        return sorted({f.timeline for f in self.files.values()})


class WalArchive:
    """The WAL archive of one source: ``Repository.wal(source)``. Keys come from ``walnames``."""

    def __init__(self, store: ObjectStore, source: str) -> None:
        self._store = store
        self.source = source

    @property
    def location(self) -> str:
        return self._store.location

    def require_repository(self) -> None:
        """The store answers and holds a repository (archive_command's dry run): asked afresh."""
        from .probe import require_repository

        require_repository(self._store)

    def push(self, path: Path, stages: Stages, *, sysid: str | None = None) -> PushResult:
        """Archive one WAL file; returns only once it is durably stored (or already was, identically)."""
        t0 = time.monotonic()
        wal.parse_name(path.name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise StorageError(f"Cannot read the WAL file {path}: {exc.strerror}.",
                               hint="archive_command runs in the data directory; pass %p unchanged.") from exc
        return self.push_bytes(path.name, raw, stages, sysid=sysid, mtime=_mtime(path), t0=t0)

    def push_bytes(self, name: str, raw: bytes, stages: Stages, *, sysid: str | None = None,
                   mtime: str | None = None, t0: float | None = None) -> PushResult:
        """Archive ``raw`` as WAL file ``name`` (see ``push``)."""
        store, source = self._store, self.source
        t0 = time.monotonic() if t0 is None else t0
        wn = wal.parse_name(name)
        raw_sha = hashlib.sha256(raw).hexdigest()
        stored = encode_bytes(raw, stages)
        record = {
            "format": RECORD_FORMAT,
            "name": name,
            "kind": wn.kind,
            "timeline": wn.timeline,
            "raw_size": len(raw),
            "raw_sha256": raw_sha,
            "size": len(stored),
            "sha256": hashlib.sha256(stored).hexdigest(),
            "stages": stages.specs(),
            "pushed_at": datetime.now(UTC).isoformat(),
            "file_mtime": mtime,
            "host": socket.gethostname(),
            "system_identifier": sysid,
            "posterity_version": __version__,
        }
        rkey, pkey = wal.record_key(source, name), wal.payload_key(source, name)
        status = "stored"
        try:
            store.put(rkey, json.dumps(record, indent=1).encode() + b"\n", if_absent=True)
        except ObjectExists:
            existing = self._read_record(rkey)
            if existing.get("raw_sha256") != raw_sha:
                raise WalConflict(
                    f"WAL file {name} is already archived in {store.location} (source {source!r}) with different "
                    f"content: sha256 {str(existing.get('raw_sha256'))[:16]}… (pushed {existing.get('pushed_at')} by "
                    f"{existing.get('host')}, cluster {existing.get('system_identifier')}) != {raw_sha[:16]}… "
                    f"(this cluster: {sysid}). Nothing was overwritten."
                ) from None
            info = store.stat(pkey)
            if info is not None:
                return PushResult(name, "already archived", len(raw), info.size, time.monotonic() - t0)
            status = "completed"  # an earlier push stopped between record and payload
        try:
            store.put(pkey, stored, if_absent=True)
        except ObjectExists:
            # Only a concurrent push of the same (record-matching) content gets here.
            info = store.stat(pkey)
            if info is None or info.size != len(stored):
                raise WalConflict(
                    f"WAL file {name}: its record matches but a different payload {pkey} exists in {store.location}."
                ) from None
            status = "already archived"
        return PushResult(name, status, len(raw), len(stored), time.monotonic() - t0)

    def _read_record(self, key: str) -> dict[str, Any]:
        data = self._store.get_bytes(key)
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
                raise ValueError("unknown format")
            if not isinstance(record.get("raw_sha256"), str) or not isinstance(record.get("stages"), list):
                raise ValueError("no raw_sha256 or stages")
        except ValueError as exc:
            raise IntegrityError(f"The WAL record {key} is damaged ({exc}).") from exc
        return record

    def _not_archived(self, name: str) -> WalNotArchived:
        return WalNotArchived(f"WAL file {name} of source {self.source!r} is not archived in {self.location}.")

    def fetch_bytes(self, name: str, identities: list,
                    record: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
        """The verified content of one archived WAL file, and its record.

        ``WalNotArchived`` when it is not (fully) archived; ``IntegrityError`` (naming the key)
        when the stored object is damaged; ``DecryptionFailed`` for a wrong identity.
        """
        from ..pipeline import decode_to

        store = self._store
        rkey, pkey = wal.record_key(self.source, name), wal.payload_key(self.source, name)
        if record is None:
            try:
                record = self._read_record(rkey)
            except ObjectNotFound:
                raise self._not_archived(name) from None
        try:
            stored = store.get_bytes(pkey)
        except ObjectNotFound:
            raise self._not_archived(name) from None
        stored_ok = hashlib.sha256(stored).hexdigest() == record.get("sha256")
        sink = io.BytesIO()
        try:
            # With a matching stored sha256 a decode failure is a key problem, reported as such.
            decode_to(iter([stored]), sink, identities, key=pkey,
                      expected_sha256=record["sha256"] if stored_ok else None,
                      expected_size=None, specs=record["stages"])
        except PosterityError as exc:
            if stored_ok:
                raise
            raise ChecksumMismatch(
                f"{pkey} is damaged: its sha256 differs from its record {rkey} and it does not decode ({exc.message})."
            ) from exc
        raw = sink.getvalue()
        if hashlib.sha256(raw).hexdigest() != record["raw_sha256"] or len(raw) != record.get("raw_size"):
            raise ChecksumMismatch(f"{pkey} decodes to content whose sha256 differs from its record {rkey}.")
        return raw, record

    def fetch(self, name: str, dest: Path, identities: list) -> int:
        """restore_command: restore WAL file ``name`` to ``dest``; returns its size."""
        wal.parse_name(name)
        raw, _ = self.fetch_bytes(name, identities)
        write_file(dest, raw)
        return len(raw)

    def complete(self, name: str) -> bool:
        """Whether ``name`` is archived whole: its payload and its record both exist."""
        return (self._store.stat(wal.payload_key(self.source, name)) is not None
                and self._store.stat(wal.record_key(self.source, name)) is not None)

    def forget(self, name: str) -> None:
        """Delete ``name``'s payload and record: only superseded streaming snapshots are forgotten
        (every other archived file is written once and removed by prune alone)."""
        if wal.parse_name(name).kind != "stream":
            raise ValueError(f"only streaming snapshots are forgotten, not {name}")
        self._store.delete([wal.payload_key(self.source, name), wal.record_key(self.source, name)])

    def listing(self) -> ArchiveListing:
        """Every WAL file of the source in one listing (payloads and records paired by name)."""
        listing = ArchiveListing(self.source)
        for info in self._store.list(wal.wal_prefix(self.source)):
            parsed = wal.parse_key(info.key)
            if parsed is None or parsed[0] != self.source:
                continue
            _, wn, what = parsed
            f = listing.files.setdefault(wn.name, ArchivedFile(wn.name, wn.kind, wn.timeline))
            if what == "payload":
                f.payload = info
            else:
                f.record = info
        return listing

    def read_history(self, tli: int, identities: list) -> list[wal.TimelineEntry]:
        """The chain of timeline ``tli`` (timeline 1 has no history file)."""
        if tli == 1:
            return [wal.TimelineEntry(1, 0, None)]
        raw, _ = self.fetch_bytes(f"{tli:08X}.history", identities)
        return wal.parse_history(raw.decode(errors="replace"), tli)


def open_archive(url: str, source: str, **store_args: Any) -> WalArchive:
    """The WAL archive of ``source`` at ``url``, without a full Repository: archive_command's
    lean entry (``cli/walfast.py``) starts once per segment and needs nothing else."""
    from ..storage import open_store

    return WalArchive(open_store(url, **store_args), source)
