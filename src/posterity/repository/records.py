"""The small records of a repository besides backups: restore points, drill reports, audit
records, locks, and the one inventory of ``backups/`` that list, verify and prune share.

A mixin of ``Repository`` (it needs only ``self.store``), so the Repository stays the one
door to the store and its module stays small. Every key comes from ``layout``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import ObjectNotFound
from ..storage import ObjectStore
from . import layout
from .locks import list_locks, remove_lock
from .point import Point
from .probe import WriteProbe, write_probe

_DAY = re.compile(rf"^{re.escape(layout.AUDIT_PREFIX)}(\d{{4}}-\d{{2}}-\d{{2}})/")
READERS = 8  # parallel GETs when reading many small records


@dataclass
class Inventory:
    """One listing of ``backups/`` (or of one source's backups): every object of every backup
    folder, with its size, and which folders hold a manifest (the committed backups)."""

    backups: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    @property
    def objects(self) -> dict[str, int]:
        return {k: size for objs in self.backups.values() for k, size in objs.items()}

    def committed(self, source: str, backup_id: str) -> bool:
        return layout.manifest_key(source, backup_id) in self.backups.get((source, backup_id), {})

    def manifest_keys(self) -> list[str]:
        return sorted(layout.manifest_key(s, i) for (s, i) in self.backups if self.committed(s, i))

    def sources(self) -> set[str]:
        return {s for s, _ in self.backups}


class RecordsMixin:
    store: ObjectStore
    lock_ttl: int

    # -- inventory --------------------------------------------------------------------
    def inventory(self, source: str | None = None) -> Inventory:
        inv: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for info in self.store.list(layout.backups_prefix(source)):
            parsed = layout.parse_backup_key(info.key)
            if parsed:
                inv[(parsed[0], parsed[1])][info.key] = info.size
        return Inventory(dict(inv))

    def is_committed(self, source: str, backup_id: str) -> bool:
        """Asked of the store now (not of an inventory taken earlier)."""
        return self.store.stat(layout.manifest_key(source, backup_id)) is not None

    def forget(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (prune: manifests first, then payloads no kept backup names)."""
        self.store.delete(list(keys))

    def wal_objects(self) -> dict[str, int]:
        """Every object under ``wal/`` with its size (prune's WAL pass)."""
        return {info.key: info.size for info in self.store.list(layout.WAL_PREFIX)}

    def read_stored(self, key: str) -> Iterator[bytes]:
        """The stored (still encrypted) bytes of ``key``: a hash check needs no identity."""
        return iter(self.store.get(key))

    def read_stored_bytes(self, key: str) -> bytes:
        """A small object's stored bytes (a manifest read afresh, not from the cache)."""
        return self.store.get_bytes(key)

    # -- restore points ---------------------------------------------------------------
    def write_point(self, point: Point) -> None:
        self.store.put(point.key, point.to_json(), if_absent=True)

    def has_point(self, point_id: str) -> bool:
        return self.store.stat(layout.point_key(point_id)) is not None

    def point_keys(self) -> list[str]:
        return sorted(i.key for i in self.store.list(layout.POINTS_PREFIX) if i.key.endswith(".json"))

    def read_point(self, key: str) -> Point:
        """``ObjectNotFound`` when gone, ``ManifestInvalid`` when malformed."""
        return Point.from_json(self.store.get_bytes(key), key)

    # -- drill reports ----------------------------------------------------------------
    def write_drill(self, source: str, drill_id: str, body: bytes) -> str:
        key = layout.drill_key(source, drill_id)
        self.store.put(key, body, if_absent=True)
        return key

    def drill_reports(self, source: str | None = None, *, last: bool = False) -> list[dict[str, Any]]:
        """Stored drill reports (of ``source``), oldest first; ``last``: only the newest one."""
        keys = sorted((i.key for i in self.store.list(layout.drills_prefix(source)) if i.key.endswith(".json")),
                      key=lambda k: (k.rsplit("/", 1)[-1], k))
        if last:
            keys = keys[-1:]
        return [r for r in self._read_json_many(keys) if r is not None]

    # -- audit records ----------------------------------------------------------------
    def audit_keys(self, first_day: str | None = None, op: str | None = None) -> list[str]:
        """Keys of the audit records from ``first_day`` (``YYYY-MM-DD``) on, of operation ``op``."""
        keys = []
        for info in self.store.list(layout.AUDIT_PREFIX):
            m = _DAY.match(info.key)
            if not m or (first_day and m.group(1) < first_day):
                continue
            # The key ends with -<op>-<4 hex>.json: filter before fetching.
            if op and not re.search(rf"-{re.escape(op)}-[0-9a-f]{{4}}\.json$", info.key):
                continue
            keys.append(info.key)
        return keys

    def audit_records(self, keys: list[str]) -> list[dict[str, Any]]:
        """The records at ``keys`` (each with its ``key``); unreadable ones are left out."""
        out = []
        for key, rec in zip(keys, self._read_json_many(keys), strict=True):
            if rec is not None:
                rec["key"] = key
                out.append(rec)
        return out

    # -- locks ------------------------------------------------------------------------
    def lock_held(self, name: str) -> bool:
        return self.store.stat(layout.lock_key(name)) is not None

    def locks(self) -> list[dict]:
        return list_locks(self.store)

    def unlock(self, name: str) -> bool:
        """Remove lock ``name`` (``posterity unlock``); False when there was none."""
        return remove_lock(self.store, name)

    # -- probes (doctor) --------------------------------------------------------------
    def write_probe(self) -> WriteProbe:
        return write_probe(self.store)

    # ---------------------------------------------------------------------------------
    def _read_json_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        def fetch(key: str) -> dict[str, Any] | None:
            try:
                data = json.loads(self.store.get_bytes(key))
            except (ValueError, ObjectNotFound):
                return None
            return data if isinstance(data, dict) else None

        if len(keys) <= 1:
            return [fetch(k) for k in keys]
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            return list(pool.map(fetch, keys))
