"""Read a tar stream as it passes by, keeping a copy of a few named members.

A base backup streams from ``pg_basebackup -Ft -D -`` straight into the pipeline, with no
local copy; the facts the manifest needs (``backup_label``, ``backup_manifest``,
``global/pg_control``) are members of that stream. ``TarTap`` is a read-through file that
parses the 512-byte tar headers on the way and captures those members, so nothing is read
twice and nothing is staged. Handles ustar (with prefix), GNU long names and pax headers.
"""

from __future__ import annotations

import io
from typing import IO

BLOCK = 512


def _octal_or_base256(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes ≥ 8 GiB
        n = field[0] & 0x7F
        for b in field[1:]:
            n = (n << 8) | b
        return n
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


class TarTap(io.RawIOBase):
    """Pass ``raw`` through unchanged; afterwards ``captured[name]`` holds the wanted members."""

    def __init__(self, raw: IO[bytes], wanted: set[str], limit: int = 64 << 20) -> None:
        self._raw = raw
        self.wanted = wanted
        self.limit = limit
        self.captured: dict[str, bytes] = {}
        self.members = 0
        self.ended = False  # saw the end-of-archive marker
        self._header = bytearray()
        self._left = 0  # bytes of the current member's data (incl. padding) still to pass
        self._data_left = 0  # of which real data
        self._capture: bytearray | None = None
        self._capture_name = ""
        self._long_name: str | None = None
        self._special: bytearray | None = None  # GNU 'L' / pax 'x' data being read
        self._special_kind = ""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # Overridden so the bytes read from the pipe are handed on as they are, not copied
        # once more into a buffer (RawIOBase.read would call readinto).
        data = self._raw.read(size)
        if data:
            self._feed(memoryview(data))
        return data or b""

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        if not data:
            return 0
        n = len(data)
        b[:n] = data
        self._feed(memoryview(data))
        return n

    def _feed(self, data: memoryview) -> None:
        while len(data):
            if self._left:
                k = min(self._left, len(data))
                real = min(k, self._data_left)
                if real:
                    if self._capture is not None:
                        self._capture += data[:real]
                    if self._special is not None:
                        self._special += data[:real]
                    self._data_left -= real
                self._left -= k
                data = data[k:]
                if not self._left:
                    self._end_member()
                continue
            need = BLOCK - len(self._header)
            self._header += data[:need]
            data = data[need:]
            if len(self._header) == BLOCK:
                self._start_member(bytes(self._header))
                self._header.clear()

    def _start_member(self, hdr: bytes) -> None:
        if hdr == b"\0" * BLOCK:
            self.ended = True
            return
        name = hdr[0:100].split(b"\0", 1)[0].decode(errors="replace")
        if hdr[257:262] == b"ustar":
            prefix = hdr[345:500].split(b"\0", 1)[0].decode(errors="replace")
            if prefix:
                name = f"{prefix}/{name}"
        size = _octal_or_base256(hdr[124:136])
        kind = chr(hdr[156]) if hdr[156] else "0"
        self._data_left = size
        self._left = (size + BLOCK - 1) // BLOCK * BLOCK
        if kind in ("L", "x"):
            self._special, self._special_kind = bytearray(), kind
        else:
            if self._long_name is not None:
                name, self._long_name = self._long_name, None
            name = name.removeprefix("./")
            self.members += 1
            if name in self.wanted and size <= self.limit:
                self._capture, self._capture_name = bytearray(), name
        if not self._left:
            self._end_member()

    def _end_member(self) -> None:
        if self._capture is not None:
            self.captured[self._capture_name] = bytes(self._capture)
            self._capture = None
        if self._special is not None:
            text = bytes(self._special).decode(errors="replace")
            if self._special_kind == "L":
                self._long_name = text.split("\0", 1)[0]
            else:
                for record in text.splitlines():
                    _, _, kv = record.partition(" ")
                    key, _, value = kv.partition("=")
                    if key == "path":
                        self._long_name = value
            self._special = None
