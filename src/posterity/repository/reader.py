"""A stored artifact as a readable stream: ``Repository.open_artifact``.

``Repository.read_artifact`` pushes decoded bytes into a writer (pg_restore's stdin, a file);
parsers (tarfile, line readers, the base-backup extractor) want to pull. A producer thread
runs ``read_artifact`` (verify → decrypt → decompress) and hands its chunks through a bounded
queue, so a few MiB are in flight at most. The sha256 of the stored object is checked when
its last byte has been read: read to the end (``finish()``, or ``chunks()`` to exhaustion)
before trusting what was read; a damaged object raises there.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import PosterityError

CHUNK = 1 << 20


class _Stop(PosterityError):
    """The reader was closed before the end."""


_END = object()


class ArtifactReader(io.RawIOBase):
    """One artifact, decoded in a thread, read here (``read``/``readinto`` or ``chunks()``)."""

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

    @property
    def error(self) -> BaseException | None:
        """What stopped the decoding thread (damage, a wrong key, the store), if anything."""
        return self._error

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

    def _next(self) -> bytes | None:
        """The next decoded chunk; None at the end (after which the sha256 was checked)."""
        if self._eof:
            return None
        if self._stop.is_set():  # closed: the thread is gone, nothing would ever come
            raise ValueError("read from a closed artifact reader")
        item = self._q.get()
        if item is _END:
            self._eof = True
            self._thread.join()
            if self._error is not None:
                raise self._error
            return None
        return item

    def chunks(self) -> Iterator[bytes]:
        """The decoded bytes as they come, without copying; raises at the end on damage."""
        if self._buf:
            buf, self._buf = self._buf, b""
            yield buf
        while (chunk := self._next()) is not None:
            yield chunk

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            chunk = self._next()
            if chunk is None:
                return 0
            self._buf = chunk
        k = min(len(b), len(self._buf))
        b[:k] = self._buf[:k]
        self._buf = self._buf[k:]
        return k

    def finish(self) -> None:
        """Read to the end, so the stored object's size and sha256 are checked."""
        for _ in self.chunks():
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
