"""Give stored bytes meaning: the descriptor, manifests, the catalog, payloads and locks.

The catalog is what ``list`` finds under ``backups/``; manifests are immutable, so they are
cached locally by key (a cache entry is used only while its key still exists).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..errors import (
    BackupNotFound,
    ManifestInvalid,
    ObjectExists,
    ObjectNotFound,
    PosterityError,
    RepositoryExists,
    RepositoryNotInitialised,
)
from ..pipeline import Stages, decode_to, encode
from ..pipeline.decode import BinarySink
from ..storage import ObjectStore, choose_part_size
from . import layout
from .locks import exclusive_lock
from .manifest import ArtifactRecord, Manifest
from .probe import require_repository
from .reader import ArtifactReader
from .records import RecordsMixin
from .walarchive import WalArchive

log = logging.getLogger(__name__)

#: Parallel GETs when reading many manifests (a catalog of 1,000 backups is 1,000 objects).
MANIFEST_READERS = 8


def fingerprint(recipient: str) -> str:
    return "sha256:" + hashlib.sha256(recipient.encode()).hexdigest()[:16]


class Repository(RecordsMixin):
    """The only door to the store: everything above ``repository/`` goes through it."""

    def __init__(self, store: ObjectStore, cache_dir: Path | None = None, lock_ttl: int = 3600) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.lock_ttl = lock_ttl
        self._descriptor: dict[str, Any] | None = None
        #: Local mirror of the audit records (JSON lines), under the state folder.
        self.audit_log: Path | None = cache_dir.parent / "audit.jsonl" if cache_dir is not None else None

    @property
    def location(self) -> str:
        """Where the repository is (URL-like, no secrets)."""
        return self.store.location

    # -- descriptor -------------------------------------------------------------------
    def init(self, recipients: list[str]) -> dict[str, Any]:
        self.store.check()
        import uuid

        desc = {
            "format": 1,
            "id": str(uuid.uuid4()),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": f"posterity {__version__}",
            "recipients": [fingerprint(r) for r in recipients],
        }
        try:
            self.store.put(layout.DESCRIPTOR, json.dumps(desc, indent=2).encode() + b"\n", if_absent=True)
        except ObjectExists as exc:
            raise RepositoryExists(f"A Posterity repository already exists at {self.store.location}.") from exc
        self._descriptor = desc
        return desc

    def require_initialised(self) -> None:
        """The store answers and holds a repository, asked afresh (archive_command's dry run,
        `posterity doctor`): never the cached descriptor."""
        require_repository(self.store)

    def descriptor(self) -> dict[str, Any]:
        if self._descriptor is None:
            try:
                self._descriptor = json.loads(self.store.get_bytes(layout.DESCRIPTOR))
            except ObjectNotFound as exc:
                # A missing bucket also answers "no such key" to a GET on some stores: ask
                # the store itself (BucketNotFound, exit 4) before telling the user to init.
                self.store.check()
                raise RepositoryNotInitialised(
                    f"No Posterity repository at {self.store.location} (no {layout.DESCRIPTOR})."
                ) from exc
        return self._descriptor

    # -- writing ----------------------------------------------------------------------
    def write_payload(
        self,
        key: str,
        stream: IO[bytes],
        stages: Stages,
        *,
        expected_size: int | None = None,
        progress=None,
    ) -> tuple[int, str, int]:
        """Encode and upload one payload; returns (stored size, sha256, raw size)."""
        # Chosen before the first byte (R2's parts are equal); refuses a stream too large for it.
        part_size = choose_part_size(expected_size, self.store.max_part_size, what=key)
        encoded = encode(stream, stages)
        # The generators are made here, not inside the store, so that they are closed here,
        # in this thread, whatever happens: an upload that fails leaves them referenced by
        # the store's client, and a generator finalised at interpreter shutdown (its
        # ``finally`` touching a queue and a thread) aborted the process (issue 11.4).
        inner = iter(encoded)
        chunks = _tap(inner, progress) if progress is not None else inner
        try:
            self.store.put(key, chunks, if_absent=True, part_size=part_size)
        finally:
            for gen in (chunks, inner):
                _close(gen)
        return encoded.size, encoded.sha256, encoded.raw_size

    def commit(self, manifest: Manifest) -> str:
        """Write the manifest last; from this moment the backup exists."""
        key = layout.manifest_key(manifest.source, manifest.id)
        self.store.put(key, manifest.to_json(), if_absent=True)
        manifest.key = key
        self._cache_put(key, manifest.to_json())
        return key

    def abandon(self, keys: Iterable[str]) -> None:
        """Best-effort removal of payloads of a backup that will never be committed."""
        try:
            self.store.delete(list(keys))
        except Exception as exc:  # the orphan is harmless: unlisted, and prune removes it
            log.warning("Could not remove uncommitted payloads (%s); `posterity prune` will.", exc)

    def lock(self, name: str, op: str, ttl: int | None = None):
        """Hold lock ``name`` (create-if-absent, expiring after ``ttl`` or ``[general] lock_ttl``)."""
        return exclusive_lock(self.store, name, op, ttl=self.lock_ttl if ttl is None else ttl)

    def wal(self, source: str) -> WalArchive:
        """The WAL archive of ``source`` (push, fetch, list, streaming snapshots)."""
        return WalArchive(self.store, source)

    def audit(self, op: str, result: str, details: dict[str, Any]) -> dict[str, Any]:
        """Write one write-once audit record, and append it to the local JSONL mirror
        (``<state_dir>/audit.jsonl``, beside the cache), which also keeps records the
        store could not take."""
        when = datetime.now(UTC)
        host = socket.gethostname()
        record = {"time": when.isoformat(), "host": host, "user": _user(), "operation": op, "result": result,
                  **details}
        key = layout.audit_key(when, host, op)
        try:
            self.store.put(key, json.dumps(record, indent=2, default=str).encode())
            stored = True
        except Exception as exc:
            log.warning("Could not write the audit record (%s).", exc)
            stored = False
        if self.audit_log is not None:
            line = {**record, "key": key if stored else None, "repository": self.store.location}
            try:
                self.audit_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.audit_log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line, default=str) + "\n")
            except OSError as exc:
                log.warning("Could not append to the local audit log %s (%s).", self.audit_log, exc)
        return record

    # -- reading ----------------------------------------------------------------------
    def manifest_keys(self, source: str | None = None) -> list[str]:
        return self.inventory(source).manifest_keys()

    def manifests(self, source: str | None = None) -> list[Manifest]:
        """Every committed backup (oldest first)."""
        out = []
        for _, got in self.read_manifests(self.manifest_keys(source)):
            if isinstance(got, ManifestInvalid):
                # One damaged manifest must not hide every other backup (list, restore latest).
                log.warning("Skipping an unreadable manifest: %s Run `posterity verify`.", got.message)
            elif isinstance(got, PosterityError):
                raise got
            else:
                out.append(got)
        # Ids have one-second resolution: order by the recorded start time first.
        out.sort(key=lambda m: (m.started_at, m.id, m.source))
        return out

    def read_manifests(self, keys: list[str]) -> list[tuple[str, Manifest | PosterityError]]:
        """Each manifest at ``keys``, or the error reading it, in order (list and prune)."""
        def read(key: str) -> tuple[str, Manifest | PosterityError]:
            try:
                return key, self.read_manifest(key)
            except PosterityError as exc:
                return key, exc

        if len(keys) > 8:  # manifests not in the local cache are one GET each: overlap them
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=MANIFEST_READERS) as pool:
                return list(pool.map(read, keys))
        return [read(k) for k in keys]

    def read_manifest(self, key: str) -> Manifest:
        cached = self._cache_get(key)
        if cached is not None:
            try:
                return Manifest.from_json(cached, key)
            except Exception:
                pass
        data = self.store.get_bytes(key)
        m = Manifest.from_json(data, key)
        self._cache_put(key, data)
        return m

    def find(self, ref: str, source: str | None = None) -> Manifest:
        """A backup by id, id prefix or ``latest`` (of ``source``)."""
        if ref == "latest":
            found = self.manifests(source)
            if not found:
                where = f" of source {source!r}" if source else ""
                raise BackupNotFound(f"There is no backup{where} yet.", hint="Run `posterity backup` first.")
            return found[-1]
        keys = self.manifest_keys(source)
        matches = [k for k in keys if (p := layout.parse_backup_key(k)) and p[1].startswith(ref)]
        if not matches:
            raise BackupNotFound(f"No backup {ref!r}" + (f" of source {source!r}." if source else "."))
        if len(matches) > 1:
            ids = ", ".join(sorted({layout.parse_backup_key(k)[1] for k in matches}))  # type: ignore[index]
            raise BackupNotFound(f"{ref!r} matches several backups: {ids}.", hint="Give more of the id.")
        return self.read_manifest(matches[0])

    def read_artifact(self, artifact: ArtifactRecord, out: BinarySink, identities: list) -> int:
        """Verify, decrypt and decompress one artifact into ``out``."""
        chunks = self.store.get(artifact.key)
        return decode_to(
            chunks,
            out,
            identities,
            key=artifact.key,
            expected_sha256=artifact.sha256,
            expected_size=artifact.size,
            specs=artifact.stages,
        )

    def open_artifact(self, artifact: ArtifactRecord, identities: list, depth: int = 8) -> ArtifactReader:
        """One artifact as a readable stream, decoded (verified, decrypted, decompressed) in a
        thread; read it to the end (``finish()``) before trusting it, ``close()`` it always."""
        return ArtifactReader(self, artifact, identities, depth)

    # -- local manifest cache (manifests are immutable) -----------------------------
    def _cache_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        try:
            rid = self.descriptor()["id"]
        except Exception:
            return None
        return self.cache_dir / "manifests" / rid / key

    def _cache_get(self, key: str) -> bytes | None:
        p = self._cache_path(key)
        if p is None or not p.is_file():
            return None
        try:
            return p.read_bytes()
        except OSError:
            return None

    def _cache_put(self, key: str, data: bytes) -> None:
        p = self._cache_path(key)
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        except OSError:
            pass


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def _close(gen: object, attempts: int = 100) -> None:
    """Close a generator that another thread may still be advancing (the store's client
    pulls chunks from its own threads): wait a moment for that step to end, boundedly."""
    close = getattr(gen, "close", None)
    if close is None:
        return
    for _ in range(attempts):
        try:
            close()
            return
        except ValueError:  # "generator already executing"
            time.sleep(0.05)
    log.warning("A payload stream was still being read after its upload ended.")


def _tap(chunks: Iterable[bytes], progress) -> Iterator[bytes]:
    for c in chunks:
        progress(len(c))
        yield c
