"""The reversible transforms between a source's bytes and the stored bytes.

Backup: raw → zstd (frame checksum on) → age (X25519 recipients) → sha256/size → store.
Restore undoes exactly what the manifest's stage specs say, so a backup taken years ago is
read with the settings it was written with, not today's defaults.

Streaming and memory: the encoder runs zstd and age in one producer thread and hands
~1 MiB chunks through a bounded queue to the consumer (the uploader), so memory stays at a
few MiB here whatever the size of the data.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

import pyrage
import zstandard

from ..errors import (
    ChecksumMismatch,
    DecryptionFailed,
    IntegrityError,
    PosterityError,
    TruncatedObject,
)

CHUNK = 1 << 20
QUEUE_DEPTH = 8


MAX_AUTO_THREADS = 4
JOIN_TIMEOUT = 5.0  # seconds to wait for the encoder thread once the consumer stopped


@dataclass(frozen=True)
class Stages:
    """Which transforms to apply; ``specs()`` is what the manifest records."""

    recipients: tuple[str, ...]
    zstd_level: int = 3
    zstd_threads: int = 0

    @property
    def compressor_threads(self) -> int:
        """zstd workers to use: ``-1`` is one per core, at most MAX_AUTO_THREADS (each costs
        ~20 MiB); on one core, none (compress in the pipeline thread)."""
        if self.zstd_threads != -1:
            return self.zstd_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return min(cores, MAX_AUTO_THREADS) if cores > 1 else 0

    def specs(self) -> list[dict[str, Any]]:
        return [
            {"name": "zstd", "level": self.zstd_level, "checksum": True},
            {"name": "age", "kind": "x25519", "recipients": list(self.recipients)},
        ]


def check_specs(specs: list[dict[str, Any]]) -> None:
    names = [s.get("name") for s in specs]
    if names != ["zstd", "age"]:
        raise IntegrityError(
            f"Unsupported stage list {names}; this Posterity reads zstd then age.",
            hint="Use the Posterity version named in the manifest, or restore by hand (README).",
        )


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
    Meilisearch, pg_dump failing) is what the user must see, with its exit code.
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


class _HashingReader(io.RawIOBase):
    """Reads an iterator of chunks as a file, hashing and counting what passes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = memoryview(b"")
        self.h = hashlib.sha256()
        self.n = 0
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                self.eof = True
                return 0
        # A view, never a copy of the rest: the decrypter reads ~64 KiB at a time, and
        # slicing bytes copied the remainder of a 16 MiB ranged-GET chunk on every read.
        k = min(len(b), len(self._buf))
        piece = self._buf[:k]
        b[:k] = piece
        self._buf = self._buf[k:]
        self.h.update(piece)
        self.n += k
        return k

    def drain(self) -> None:
        while not self.eof:
            self.readinto(bytearray(CHUNK))


class BinarySink(Protocol):
    """Anything with ``write(bytes)``: a file, a pipe, a progress tap."""

    def write(self, b: bytes, /) -> Any: ...


def decode_to(
    chunks: Iterator[bytes],
    out: BinarySink,
    identities: list,
    *,
    key: str,
    expected_sha256: str | None,
    expected_size: int | None,
    specs: list[dict[str, Any]] | None = None,
) -> int:
    """Verify, decrypt and decompress ``chunks`` into ``out``; return the raw bytes written.

    Integrity is judged on the stored bytes (sha256 and size from the manifest) first, so a
    damaged object is reported as damaged (naming ``key``) rather than as a key problem.
    """
    if specs is not None:
        check_specs(specs)
    reader = _HashingReader(chunks)
    counter = _CountingWriter(out)
    plain = _ZstdWriter(counter)
    failure: BaseException | None = None
    try:
        pyrage.decrypt_io(reader, plain, identities)
        plain.finish()
    except PosterityError:
        raise
    except BrokenPipeError:
        raise
    except Exception as exc:
        failure = exc
    if failure is not None and counter.write_error is not None:
        # The destination failed (disk full, reader gone), not the object: say that.
        raise counter.write_error
    if failure is not None:
        try:
            reader.drain()
        except PosterityError:
            raise
        _check_integrity(reader, key, expected_sha256, expected_size)
        text = str(failure).lower()
        if isinstance(failure, pyrage.DecryptError) and ("no matching" in text or "header" in text):
            raise DecryptionFailed(
                f"None of the configured identities can decrypt {key}.",
            ) from failure
        if isinstance(failure, zstandard.ZstdError):
            raise IntegrityError(f"{key} decrypted but does not decompress: {failure}.") from failure
        raise IntegrityError(f"{key} could not be decoded: {failure}.") from failure
    _check_integrity(reader, key, expected_sha256, expected_size)
    return counter.n


def _check_integrity(reader: _HashingReader, key: str, sha: str | None, size: int | None) -> None:
    if size is not None and reader.n < size:
        raise TruncatedObject(f"{key} is truncated: {reader.n} of {size} bytes.")
    if sha is not None and reader.h.hexdigest() != sha:
        raise ChecksumMismatch(
            f"{key} does not match its manifest: sha256 {reader.h.hexdigest()[:16]}… != {sha[:16]}…."
        )
    if size is not None and reader.n != size:
        raise IntegrityError(f"{key} has {reader.n} bytes, its manifest says {size}.")


class _ZstdWriter(io.RawIOBase):
    """Decompress zstd frames written to it into ``out``; ``finish`` fails on a cut frame.

    Why not ``ZstdDecompressor.stream_writer``: it accepts a stream that ends inside a frame
    without a word, so a payload whose compression never finished would decode "fine" to a
    short result. Each frame's content checksum is verified by zstd when the frame ends.
    """

    def __init__(self, out: IO[bytes] | io.RawIOBase) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj(write_size=CHUNK)
        self._out = out
        self._in_frame = False
        self.frames = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        while data:
            produced = self._obj.decompress(data)
            if produced:
                self._out.write(produced)
            if not self._obj.eof:
                self._in_frame = True
                break
            self.frames += 1
            self._in_frame = False
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj(write_size=CHUNK)
        return len(b)

    def finish(self) -> None:
        if self._in_frame or self.frames == 0:
            raise zstandard.ZstdError("the data ends inside a zstd frame (compression never finished)")


class _CountingWriter(io.RawIOBase):
    def __init__(self, raw: BinarySink) -> None:
        self._raw = raw
        self.n = 0
        self.write_error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        try:
            self._raw.write(b)
        except OSError as exc:
            self.write_error = exc
            raise
        self.n += len(b)
        return len(b)
