"""S3-compatible object storage (Cloudflare R2, AWS S3, SeaweedFS, MinIO) through obstore.

Why obstore: measured here at 1.6–1.9× boto3's upload speed, its Rust client streams with
bounded memory, honours ``If-None-Match: *`` for create-only writes, and does not send the
CRC32 checksum trailers that R2 rejects (no checksum algorithm is configured).

R2's rules and how we meet them:
- every non-final multipart part has the same size: the stream is cut into exact
  ``part_size`` chunks by obstore's multipart writer (``chunk_size``), the last one shorter;
- part size is chosen from the expected size (``choose_part_size``) so 10,000 parts suffice;
- create-only writes use ``If-None-Match: *`` (a single PUT). obstore cannot send that header
  on CompleteMultipartUpload, so a streamed object larger than one part is checked with HEAD
  first: payload keys carry a fresh random backup id, so only a buggy second writer of the
  same id could race, and manifests and locks (the keys whose uniqueness matters) are
  always small single PUTs;
- one write per second per key: R2's 429 is retried by obstore (``s3client`` backoff).

The client itself (configuration from ``[repository]`` alone, timeouts, retries, unsigned
payloads) is built in ``s3client``; obstore's errors are mapped in ``s3errors``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from urllib.parse import urlparse

import obstore

from ..errors import (
    BucketNotFound,
    ObjectExists,
    ObjectNotFound,
    PosterityError,
    StorageAuthError,
    StorageUnreachable,
    StreamTooLarge,
    WriteConflict,
)
from .base import MAX_PARTS, MIN_PART_SIZE, ObjectInfo, ObjectStore
from .s3client import Timeouts, build_client
from .s3errors import map_error

__all__ = ["S3Store", "map_error"]

UPLOAD_CONCURRENCY = 4
RANGED_GET_THRESHOLD = 64 * 1024 * 1024
RANGE_SIZE = 8 * 1024 * 1024
RANGE_WINDOW = 4


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "auto",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        scheme: str = "s3",
        max_retries: int = 5,
        timeouts: Timeouts | None = None,
        unsigned_payload: bool | None = None,
        max_part_size: int | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        shown = f"{scheme}://{bucket}/{self.prefix}".rstrip("/")
        self.location = shown if not endpoint else f"{shown} at {urlparse(endpoint).netloc}"
        if max_part_size:
            self.max_part_size = max_part_size
        self.timeouts = replace(timeouts or Timeouts(), max_retries=max_retries)
        if unsigned_payload is None:
            # Over TLS the payload hash in the signature adds nothing the connection does not
            # already check (and the manifest's sha256 checks the stored bytes end to end).
            unsigned_payload = not endpoint or endpoint.startswith("https://")
        self.unsigned_payload = unsigned_payload
        self._store = build_client(
            bucket,
            self.prefix,
            endpoint=endpoint,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            unsigned_payload=unsigned_payload,
            timeouts=self.timeouts,
            location=self.location,
        )

    def put(self, key, data, *, if_absent=True, part_size=None) -> int:
        part = part_size or MIN_PART_SIZE
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                self._put_one(key, bytes(data), if_absent)
                return len(data)
            # Peek one part: a stream that fits in it is a single (conditional) PUT.
            it = iter(data)
            head, _ = _take(it, part)
            if head is not None and len(head) < part:
                self._put_one(key, head, if_absent)
                return len(head)
            if if_absent and self.stat(key) is not None:
                raise ObjectExists(f"Object {key} already exists in {self.location}.")
            counter = _Counter(itertools.chain([head] if head else [], it), limit=part * MAX_PARTS, key=key)
            obstore.put(
                self._store,
                key,
                counter,
                use_multipart=True,
                chunk_size=part,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
            return counter.n
        except PosterityError:
            raise
        except Exception as exc:
            raise map_error(exc, key, self.location) from exc

    def _put_one(self, key: str, body: bytes, if_absent: bool) -> None:
        """One PUT whose outcome is settled even when its reply is lost.

        obstore does not retry a PUT after a connection error, and retries a 5xx into a 412
        when the first attempt did land; either way the object may exist though the call
        failed. A key that now holds exactly our bytes was written by us: success. A key
        still absent after a connection error (or a stalled request that timed out) is safe
        to send once more; so is one still absent after R2's 409 ConditionalRequestConflict
        (another conditional write to the key was in flight), after a pause.
        """
        for attempt in (1, 2, 3):
            try:
                obstore.put(self._store, key, body, mode="create" if if_absent else "overwrite")
                return
            except Exception as exc:
                err = map_error(exc, key, self.location)
                if isinstance(err, BucketNotFound | StorageAuthError):
                    raise err from exc
                state = self._holds(key, body)
                if state == "ours":
                    return
                if state == "other" and if_absent:
                    # Whatever went wrong (a 409, 429s from writers racing for one key), the key
                    # now holds another writer's bytes: for a create-only write that is the answer.
                    raise ObjectExists(f"Object {key} already exists in {self.location}.") from exc
                retryable = isinstance(err, StorageUnreachable | WriteConflict)
                if attempt == 3 or state != "absent" or not retryable:
                    raise err from exc
                if isinstance(err, WriteConflict):
                    time.sleep(1.0)

    def _holds(self, key: str, body: bytes) -> str:
        """"ours" (the key holds exactly ``body``), "absent", "other", or "unknown" (cannot tell)."""
        try:
            info = self.stat(key)
            if info is None:
                return "absent"
            return "ours" if info.size == len(body) and self.get_bytes(key) == body else "other"
        except PosterityError:
            return "unknown"

    def get(self, key: str) -> Iterator[bytes]:
        # Large objects are read as parallel ranged GETs: a single R2 stream is far slower
        # than the link, and restores are where minutes matter.
        info = self.stat(key)
        if info is None:
            raise ObjectNotFound(f"Object {key} does not exist in {self.location}.")
        if info.size > RANGED_GET_THRESHOLD:
            return self._ranged(key, info.size)
        try:
            result = obstore.get(self._store, key)
        except Exception as exc:
            raise map_error(exc, key, self.location) from exc
        return self._stream(result, key)

    def _stream(self, result, key: str) -> Iterator[bytes]:
        try:
            for chunk in result.stream(min_chunk_size=1 << 20):
                yield bytes(chunk)
        except Exception as exc:
            raise map_error(exc, key, self.location) from exc

    def _ranged(self, key: str, size: int) -> Iterator[bytes]:
        """In-order chunks of ``key`` fetched RANGE_SIZE at a time, RANGE_WINDOW ahead."""
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        def fetch(start: int) -> bytes:
            try:
                return bytes(obstore.get_range(self._store, key, start=start, end=min(start + RANGE_SIZE, size)))
            except Exception as exc:
                raise map_error(exc, key, self.location) from exc

        starts = iter(range(0, size, RANGE_SIZE))
        with ThreadPoolExecutor(max_workers=RANGE_WINDOW) as pool:
            pending: deque[Future[bytes]] = deque(pool.submit(fetch, s) for s in itertools.islice(starts, RANGE_WINDOW))
            try:
                while pending:
                    data = pending.popleft().result()
                    nxt = next(starts, None)
                    if nxt is not None:
                        pending.append(pool.submit(fetch, nxt))
                    yield data
            finally:
                for f in pending:
                    f.cancel()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            meta = obstore.head(self._store, key)
        except FileNotFoundError:
            return None
        except Exception as exc:
            err = map_error(exc, key, self.location)
            if isinstance(err, ObjectNotFound):
                return None
            raise err from exc
        return ObjectInfo(key, int(meta["size"]), meta.get("last_modified"))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            for batch in obstore.list(self._store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    path = meta["path"]
                    if path.startswith(prefix):
                        yield ObjectInfo(path, int(meta["size"]), meta.get("last_modified"))
        except Exception as exc:
            raise map_error(exc, prefix or "/", self.location) from exc

    def delete(self, keys: Iterable[str]) -> None:
        # disable_bulk_delete (set at construction) makes these single-key DELETEs: the bulk
        # DeleteObjects call must carry a body checksum header that R2 lists as unimplemented.
        from concurrent.futures import ThreadPoolExecutor

        def one(key: str) -> None:
            try:
                obstore.delete(self._store, key)
            except FileNotFoundError:
                return
            except Exception as exc:
                err = map_error(exc, key, self.location)
                if isinstance(err, ObjectNotFound):
                    return
                if isinstance(err, StorageAuthError):
                    err.message = f"{self.location} refused to delete {key} (access denied; a bucket lock may protect it)."
                    err.args = (err.message,)
                raise err from exc

        batch = list(keys)
        if len(batch) <= 1:
            for key in batch:
                one(key)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(batch))) as pool:
            for _ in pool.map(one, batch):
                pass

    def check(self) -> None:
        # A list of one key proves bucket, credentials and network in one request.
        try:
            for _ in obstore.list(self._store, prefix="posterity.json", chunk_size=1):
                break
        except Exception as exc:
            raise map_error(exc, "posterity.json", self.location) from exc


def _take(it: Iterator[bytes], size: int) -> tuple[bytes | None, int]:
    """Read up to ``size`` bytes (or a bit more) from ``it``; None when empty."""
    parts: list[bytes] = []
    n = 0
    for chunk in it:
        parts.append(chunk)
        n += len(chunk)
        if n >= size:
            break
    if not parts:
        return b"", 0
    return b"".join(parts), n


class _Counter:
    """Counts the streamed bytes; stops a stream that outgrew 10,000 parts as soon as it does."""

    def __init__(self, it: Iterator[bytes], limit: int | None = None, key: str = "") -> None:
        self._it = it
        self.n = 0
        self._limit = limit
        self._key = key

    def __iter__(self) -> _Counter:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._it)
        self.n += len(chunk)
        if self._limit is not None and self.n > self._limit:
            raise StreamTooLarge(
                f"{self._key} grew past {self._limit // 2**20:,} MiB, the most {MAX_PARTS:,} parts of the size chosen "
                "from its estimate can hold; the upload was abandoned and nothing was committed.",
                hint="The source's size estimate was far too low; raise [repository] max_part_size_mib and report it.",
            )
        return chunk
