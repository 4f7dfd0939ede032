"""A small time-bounded cache for what the dashboard reads from the repository.

Listing a bucket and reading manifests, audit records and drill reports costs round trips
(R2: tens of milliseconds each; a catalog of 1,000 backups is 1,000 manifests); several
people refreshing a page must not multiply them, and a page must not wait for them when a
recent answer exists. So:

- an entry younger than ``ttl`` is served as is;
- an entry older than ``ttl`` but younger than ``ttl + stale_grace`` is served as is *and*
  refreshed on a background thread (once, however many requests ask), so the next view is
  current; the pages show the time their data was read;
- anything older, or missing, is computed while the request waits; one lock per key makes
  concurrent requests for it wait for one read instead of starting their own;
- ``ttl <= 0`` disables the cache (every request reads).

An exception is never cached: the next request tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)


class TTLCache:
    def __init__(self, ttl: float, stale_grace: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.stale_grace = stale_grace
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._refreshing: set[Hashable] = set()
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if self.ttl <= 0:
            return compute()
        entry = self._entries.get(key)
        if entry is not None:
            age = self._clock() - entry[0]
            if age < self.ttl:
                return entry[1]
            if age < self.ttl + self.stale_grace:
                self._refresh_in_background(key, compute)
                return entry[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)  # another request may have filled it while we waited
            if entry is not None and self._clock() - entry[0] < self.ttl:
                return entry[1]
            return self._store(key, compute())

    def _store(self, key: Hashable, value: Any) -> Any:
        self._entries[key] = (self._clock(), value)
        return value

    def _refresh_in_background(self, key: Hashable, compute: Callable[[], Any]) -> None:
        with self._guard:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                self._store(key, compute())
            except Exception as exc:  # keep serving the older answer; the next view retries
                log.warning("dashboard: refreshing %s failed: %s", key, exc)
            finally:
                with self._guard:
                    self._refreshing.discard(key)

        threading.Thread(target=run, name="web-refresh", daemon=True).start()

    def clear(self) -> None:
        self._entries.clear()
