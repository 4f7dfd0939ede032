"""An in-memory store, for tests and dry runs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from ..errors import ObjectExists, ObjectNotFound
from .base import ObjectInfo, ObjectStore


class MemoryStore(ObjectStore):
    def __init__(self, name: str = "memory") -> None:
        self.location = f"memory://{name}"
        self._objects: dict[str, tuple[bytes, datetime]] = {}
        self._lock = threading.Lock()

    def put(self, key, data, *, if_absent=True, part_size=None) -> int:
        body = data if isinstance(data, bytes | bytearray | memoryview) else b"".join(data)
        body = bytes(body)
        with self._lock:
            if if_absent and key in self._objects:
                raise ObjectExists(f"Object {key} already exists in {self.location}.")
            self._objects[key] = (body, datetime.now(UTC))
        return len(body)

    def get(self, key: str) -> Iterator[bytes]:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(f"Object {key} does not exist in {self.location}.")
        body = found[0]
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]
        if not body:
            return

    def stat(self, key: str) -> ObjectInfo | None:
        with self._lock:
            found = self._objects.get(key)
        return None if found is None else ObjectInfo(key, len(found[0]), found[1])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = [(k, v) for k, v in self._objects.items() if k.startswith(prefix)]
        for k, (body, when) in sorted(items):
            yield ObjectInfo(k, len(body), when)

    def delete(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._objects.pop(k, None)

    def check(self) -> None:
        return None
