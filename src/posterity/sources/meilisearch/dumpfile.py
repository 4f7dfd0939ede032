"""Read the indexes out of a Meilisearch dump as it streams past, without unpacking it.

A dump (``<dumpUid>.dump``) is a gzip tar written by Meilisearch's dump writer:
``metadata.json``, ``keys.jsonl``, ``tasks/…``, and per index ``indexes/<uid>/metadata.json``
(uid, primaryKey, createdAt, updatedAt), ``settings.json`` (embedder secrets in clear) and
``documents.jsonl`` (one document per line, ``_vectors`` included). Meilisearch can only import
a whole dump at start-up; reading ``indexes/<uid>/`` lets Posterity restore one index from it
into a running server.

The order of members inside the tar is the order the writer's folder was walked in, so it is
not fixed: a consumer must accept an index's documents before its metadata.
"""

from __future__ import annotations

import json
import tarfile
from typing import IO, Any, Protocol

from ...errors import IntegrityError


class IndexFileHandler(Protocol):
    def index_file(self, uid: str, name: str, fh: IO[bytes]) -> None: ...


def walk_dump(stream: IO[bytes], handler: IndexFileHandler, where: str) -> dict[str, Any]:
    """Stream the dump's members; hand each ``indexes/<uid>/<file>`` to ``handler``.

    Returns the dump's top-level ``metadata.json`` (dumpVersion, dbVersion, dumpDate).
    """
    top: dict[str, Any] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./").lstrip("/")
                parts = name.split("/")
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                if name == "metadata.json":
                    top = json.loads(fh.read())
                elif len(parts) == 3 and parts[0] == "indexes" and parts[1]:
                    handler.index_file(parts[1], parts[2], fh)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise IntegrityError(
            f"{where} is not a readable Meilisearch dump ({type(exc).__name__}: {exc}).",
            hint="Restore from another backup, or from its export artifacts if it has them.",
        ) from exc
    return top
