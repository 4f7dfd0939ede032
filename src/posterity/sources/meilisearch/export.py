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
from collections.abc import Iterator
from typing import Any

from ...errors import ManifestInvalid
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
# A stored export is read back through ``Repository.open_artifact`` (a readable stream).
