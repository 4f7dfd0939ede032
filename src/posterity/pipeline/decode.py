"""Decoding: stored bytes → verify (sha256, size) → age → zstd → the source's bytes.

Integrity is judged on the stored bytes first, so a damaged object is reported as damaged
rather than as a key problem; a stream that ends inside a zstd frame is an error, never a
short result.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import IO, Any, Protocol

import pyrage
import zstandard

from ..errors import (
    ChecksumMismatch,
    DecryptionFailed,
    IntegrityError,
    PosterityError,
    TruncatedObject,
)
from .stages import CHUNK, check_specs


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
