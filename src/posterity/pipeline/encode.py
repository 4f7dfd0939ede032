"""Encoding: a source's stream → zstd → age → the stored bytes, with their sha256 and size.

Streaming and memory: the encoder runs zstd and age in one producer thread and hands
~1 MiB chunks through a bounded queue to the consumer (the uploader), so memory stays at a
few MiB here whatever the size of the data.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, cast

import pyrage
import zstandard

from ..errors import PosterityError, say_nothing_committed
from .stages import CHUNK, Stages

QUEUE_DEPTH = 8
JOIN_TIMEOUT = 5.0  # seconds to wait for the encoder thread once the consumer stopped


class _Cancelled(Exception):
    pass


class _QueueWriter(io.RawIOBase):
    """A file-like sink that hands fixed-size chunks to a bounded queue."""

    def __init__(self, q: queue.Queue, cancelled: threading.Event) -> None:
        self._q = q
        self._buf = bytearray()
        self._cancelled = cancelled

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self._cancelled.is_set():
            raise _Cancelled()
        self._buf += b
        while len(self._buf) >= CHUNK:
            self._send(bytes(self._buf[:CHUNK]))
            del self._buf[:CHUNK]
        return len(b)

    def _send(self, chunk: bytes) -> None:
        while True:
            if self._cancelled.is_set():
                raise _Cancelled()
            try:
                self._q.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        if self._buf:
            self._send(bytes(self._buf))
            self._buf.clear()


class _CountingReader(io.RawIOBase):
    """The source's stream as zstd reads it; keeps the first error the source raised.

    zstd and age wrap an exception raised while they read into their own errors
    (``ZstdError``, ``pyrage.EncryptError``); the source's own error (a refusal from
    Meilisearch, pg_dump failing) is what the user must see, with its exit code, and with
    a hint that says nothing was committed (``errors.say_nothing_committed``).
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.n = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def _read_raw(self, size: int) -> bytes:
        try:
            return self._raw.read(size)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            raise

    def read(self, size: int = -1) -> bytes:
        # zstd's stream_reader calls read(): hand the source's bytes on as they are
        # (RawIOBase.read would allocate, readinto and copy twice more per chunk).
        data = self._read_raw(size)
        self.n += len(data)
        return data or b""

    def readinto(self, b) -> int:
        data = self._read_raw(len(b))
        if not data:
            return 0
        k = len(data)
        b[:k] = data
        self.n += k
        return k


@dataclass
class EncodedStream:
    """Iterate to get the stored bytes; afterwards ``sha256``/``size``/``raw_size`` are set."""

    source: IO[bytes]
    stages: Stages
    sha256: str = ""
    size: int = 0
    raw_size: int = 0
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: BaseException | None = field(default=None, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def __iter__(self) -> Iterator[bytes]:
        q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        done = object()
        counting = _CountingReader(self.source)
        recipients = [_recipient(r) for r in self.stages.recipients]

        def produce() -> None:
            try:
                cctx = zstandard.ZstdCompressor(
                    level=self.stages.zstd_level, write_checksum=True, threads=self.stages.compressor_threads
                )
                with cctx.stream_reader(cast(IO[bytes], counting), read_size=CHUNK, closefd=False) as compressed:
                    sink = _QueueWriter(q, self._cancelled)
                    pyrage.encrypt_io(compressed, sink, recipients)
                    sink.finish()
            except _Cancelled:
                pass
            except BaseException as exc:
                # The source's own error, not the wrapper zstd/age made of it; a
                # cancellation (the consumer stopped reading) is not an error.
                if counting.error is not None:
                    self._error = counting.error
                elif not self._cancelled.is_set():
                    self._error = exc
            finally:
                self._put_final(q, done)

        self._thread = threading.Thread(target=produce, name="posterity-encode", daemon=True)
        self._thread.start()
        h = hashlib.sha256()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                h.update(item)
                self.size += len(item)
                yield item
        finally:
            self._cancelled.set()
            self._drain(q)
            # Bounded: a producer blocked reading a stalled source (pg_dump waiting on a
            # lock) ends when the caller aborts that source, which happens after this
            # returns; an unbounded join here would wait for it first.
            self._thread.join(timeout=JOIN_TIMEOUT)
        if self._error is not None:
            if self._error is counting.error and isinstance(self._error, PosterityError):
                # The source failed mid-stream: this payload is never committed, whichever kind
                # of source it was (pg_dump and tar say so; a Meilisearch refusal did not).
                say_nothing_committed(self._error)
            raise self._error
        self.raw_size = counting.n
        self.sha256 = h.hexdigest()

    def _put_final(self, q: queue.Queue, done: object) -> None:
        while True:
            try:
                q.put(done, timeout=0.5)
                return
            except queue.Full:
                if self._cancelled.is_set():
                    return

    @staticmethod
    def _drain(q: queue.Queue) -> None:
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass


def _recipient(text: str):
    from .keys import parse_recipient

    return parse_recipient(text)


def encode(source: IO[bytes], stages: Stages) -> EncodedStream:
    return EncodedStream(source, stages)


def encode_bytes(raw: bytes, stages: Stages) -> bytes:
    """age(zstd(raw)) in memory, for small objects (one WAL segment): one zstd frame with its
    checksum, readable by ``decode_to`` like a streamed payload. One thread: a segment is
    16 MiB, and ``archive_command`` runs once per segment, where starting workers costs more
    than it saves."""
    compressed = zstandard.ZstdCompressor(level=stages.zstd_level, write_checksum=True).compress(raw)
    return pyrage.encrypt(compressed, [_recipient(r) for r in stages.recipients])

