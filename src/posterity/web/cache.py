"""A small time-bounded cache for what the dashboard reads from the repository.

Listing a bucket and reading manifests, audit records and drill reports costs round trips
(R2: tens of milliseconds each); several people refreshing a page must not multiply them.
Each entry lives ``ttl`` seconds; one lock per key makes concurrent requests for the same
missing entry wait for one read instead of starting their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        hit = self._fresh(key)
        if hit is not None:
            return hit[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._fresh(key)  # another request may have filled it while we waited
            if hit is not None:
                return hit[1]
            value = compute()  # an exception is not cached: the next request tries again
            self._entries[key] = (self._clock(), value)
            return value

    def _fresh(self, key: Hashable) -> tuple[float, Any] | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry[0] < self.ttl:
            return entry
        return None

    def clear(self) -> None:
        self._entries.clear()
