"""Fill one temporary index of a Meilisearch restore: create it, apply the backed-up
settings, add the documents in NDJSON batches (a few tasks in flight, one batch in memory),
and check the document count and primary key. ``restore.py`` plans and swaps.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import IO, Any

from ...errors import RestoreFailed
from .client import MeiliClient
from .settings_restore import apply_index_settings

BATCH_BYTES = 8 << 20
BATCH_DOCS = 10_000
MAX_IN_FLIGHT = 4
_HIDDEN_SECRET = re.compile(r"^.{0,5}X{3,6}\.\.\.$")


@dataclass
class Plan:
    uid: str
    target: str
    temp: str
    primary_key: str | None = None
    meta_seen: bool = False
    settings: dict[str, Any] | None = None
    settings_applied: bool = False
    created: bool = False
    sent: int = 0
    pending: list[int] = field(default_factory=list)
    spool: IO[bytes] | None = None
    placeholder: bool = False
    documents: int | None = None


def temp_name(target: str) -> str:
    return f"{target}__posterity_{secrets.token_hex(3)}"


def restorable_settings(settings: dict[str, Any], uid: str, warnings: list[str]) -> dict[str, Any]:
    """Settings to PATCH: embedder API keys that Meilisearch hid from the API are left out."""
    out = json.loads(json.dumps(settings))
    for name, emb in (out.get("embedders") or {}).items():
        key = emb.get("apiKey") if isinstance(emb, dict) else None
        if isinstance(key, str) and _HIDDEN_SECRET.match(key):
            del emb["apiKey"]
            warnings.append(
                f"index {uid!r}: embedder {name!r} had an apiKey that Meilisearch does not reveal over the API, "
                "so the export does not hold it; set it again with PATCH /indexes/<uid>/settings/embedders."
            )
    return out


class Loader:
    """Fills the temporary index of one plan."""

    def __init__(self, client: MeiliClient, plan: Plan, warnings: list[str]) -> None:
        self.c = client
        self.p = plan
        self.warnings = warnings

    def create(self) -> None:
        if self.p.created:
            return
        self.p.created = True  # set first: a half-done creation is cleaned up too
        uid = self.c.enqueue("POST", "/indexes", json={"uid": self.p.temp, "primaryKey": self.p.primary_key})
        self.c.wait_task(uid)

    def apply_settings(self) -> None:
        if self.p.settings_applied or self.p.settings is None:
            return
        self.create()
        patch = restorable_settings(self.p.settings, self.p.uid, self.warnings)
        apply_index_settings(self.c, self.p.temp, patch, self.p.uid, self.warnings)
        self.p.settings_applied = True

    def add_lines(self, fh: IO[bytes]) -> None:
        self.create()
        batch: list[bytes] = []
        size = 0
        for line in fh:
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                line += b"\n"
            batch.append(line)
            size += len(line)
            if size >= BATCH_BYTES or len(batch) >= BATCH_DOCS:
                self._send(batch)
                batch, size = [], 0
        if batch:
            self._send(batch)

    def _send(self, batch: list[bytes]) -> None:
        params = {"primaryKey": self.p.primary_key} if self.p.primary_key else None
        uid = self.c.enqueue(
            "POST", f"/indexes/{self.p.temp}/documents", params=params, content=b"".join(batch),
            headers={"Content-Type": "application/x-ndjson"},
        )
        self.p.sent += len(batch)
        self.p.pending.append(uid)
        while len(self.p.pending) > MAX_IN_FLIGHT:
            self.c.wait_task(self.p.pending.pop(0))

    def finish(self) -> None:
        self.create()
        self.apply_settings()
        while self.p.pending:
            self.c.wait_task(self.p.pending.pop(0))
        stats = self.c.get(f"/indexes/{self.p.temp}/stats")
        got = stats.get("numberOfDocuments")
        expected = self.p.documents if self.p.documents is not None else self.p.sent
        if got != self.p.sent or got != expected:
            raise RestoreFailed(
                f"Index {self.p.uid!r}: the restored copy holds {got} documents, the backup {expected} "
                f"({self.p.sent} sent).",
                hint="Duplicate primary keys or rejected documents; the backup may predate a primary key change.",
            )
        info = self.c.get(f"/indexes/{self.p.temp}")
        if self.p.primary_key and info.get("primaryKey") != self.p.primary_key:
            raise RestoreFailed(
                f"Index {self.p.uid!r}: the restored copy has primary key {info.get('primaryKey')!r}, "
                f"the backup {self.p.primary_key!r}."
            )
