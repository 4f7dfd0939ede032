"""The API export format: one NDJSON artifact per index, written and read one page at a time.

An export artifact (``index-<uid>.ndjson``, kind ``meilisearch-export``) is plain NDJSON:

    line 1     {"format": "posterity-meilisearch-index", "version": 1, "index": {uid, primaryKey,
                createdAt, updatedAt}, "settings": {…GET /indexes/<uid>/settings…},
                "meilisearch_version": "1.12.0"}
    line 2…    one document per line, exactly as POST /documents/fetch returned it with
               retrieveVectors=true (nested fields and ``_vectors`` included)

so ``tail -n +2`` of the decoded artifact can be posted to ``/indexes/<uid>/documents`` with
``Content-Type: application/x-ndjson`` by hand. One artifact per index (not one combined file)
lets ``restore --index posters`` read only the bytes of that index.

Memory: the writer holds one page of documents (``page_size``); the reader one line at a time
(and the restore one batch).
"""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

from ...errors import ManifestInvalid, PosterityError
from .client import MeiliClient

EXPORT_KIND = "meilisearch-export"
FORMAT = "posterity-meilisearch-index"
VERSION = 1
CHUNK = 1 << 20


def export_name(uid: str) -> str:
    return f"index-{uid}.ndjson"


def header_line(index: dict[str, Any], settings: dict[str, Any], meili_version: str) -> bytes:
    head = {
        "format": FORMAT,
        "version": VERSION,
        "index": {k: index.get(k) for k in ("uid", "primaryKey", "createdAt", "updatedAt")},
        "settings": settings,
        "meilisearch_version": meili_version,
    }
    return json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def parse_header(line: bytes, where: str) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except ValueError as exc:
        raise ManifestInvalid(f"{where} does not start with a Posterity export header ({exc}).") from exc
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ManifestInvalid(f"{where} is not a Posterity Meilisearch export (no {FORMAT!r} header).")
    if head.get("version") != VERSION:
        raise ManifestInvalid(
            f"{where} is export format version {head.get('version')!r}; this Posterity reads {VERSION}.",
            hint="Use the Posterity version named in the manifest, or restore by hand (docs/meilisearch.md).",
        )
    return head


class ExportStream(io.RawIOBase):
    """The bytes of one index's export: the header line, then its documents page by page.

    ``count`` is the number of documents written so far; the source compares it with the
    index's stats once the stream is consumed.
    """

    def __init__(self, client: MeiliClient, uid: str, header: bytes, page_size: int) -> None:
        self._chunks = self._generate(client, uid, header, page_size)
        self._buf = b""
        self.count = 0

    def _generate(self, client: MeiliClient, uid: str, header: bytes, page_size: int) -> Iterator[bytes]:
        yield header
        for page in client.documents(uid, page_size):
            self.count += len(page)
            yield b"".join(
                json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for doc in page
            )

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        k = min(len(b), len(self._buf))
        b[:k] = self._buf[:k]
        self._buf = self._buf[k:]
        return k


# --------------------------------------------------------------------------- reading back


class _Stop(PosterityError):
    """The reader was closed before the end."""


_END = object()


class ArtifactReader(io.RawIOBase):
    """A stored artifact as a readable stream (verify → decrypt → decompress in a thread).

    ``Repository.read_artifact`` pushes decoded bytes into a writer; parsers (tarfile,
    line readers) want to pull. A producer thread bridges the two through a bounded queue,
    so a few MiB are in flight at most. The sha256 of the stored object is checked when its
    last byte has been read: call ``finish()`` (reads to the end, raises on damage) before
    trusting what was read.
    """

    def __init__(self, repo: Any, artifact: Any, identities: list, depth: int = 8) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buf = b""
        self._eof = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._produce, args=(repo, artifact, identities), name="posterity-read", daemon=True
        )
        self._thread.start()

    def _produce(self, repo: Any, artifact: Any, identities: list) -> None:
        try:
            repo.read_artifact(artifact, _QueueSink(self._q, self._stop), identities)
        except _Stop:
            pass
        except BaseException as exc:
            self._error = exc
        finally:
            while not self._stop.is_set():
                try:
                    self._q.put(_END, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            if self._eof:
                return 0
            item = self._q.get()
            if item is _END:
                self._eof = True
                self._thread.join()
                if self._error is not None:
                    raise self._error
                return 0
            self._buf = item
        k = min(len(b), len(self._buf))
        b[:k] = self._buf[:k]
        self._buf = self._buf[k:]
        return k

    def finish(self) -> None:
        """Read to the end, so the stored object's size and sha256 are checked."""
        sink = bytearray(CHUNK)
        while self.readinto(sink):
            pass

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=30)
        super().close()


class _QueueSink:
    def __init__(self, q: queue.Queue, stop: threading.Event) -> None:
        self._q = q
        self._stop = stop

    def write(self, b) -> int:
        data = bytes(b)
        while True:
            if self._stop.is_set():
                raise _Stop()
            try:
                self._q.put(data, timeout=0.2)
                return len(data)
            except queue.Full:
                continue

    def flush(self) -> None:
        pass
