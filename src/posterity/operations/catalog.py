"""The catalog as plain records: one summary per committed backup, and the stored drill
reports. ``posterity list --json`` and the dashboard's ``/api/sources/<name>/backups`` print
the same records, so both read them here."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ObjectNotFound
from ..repository import Manifest
from .context import Context


def backup_summary(m: Manifest) -> dict[str, Any]:
    """What ``posterity list --json`` prints for one backup."""
    return {"id": m.id, "source": m.source, "kind": m.kind, "started_at": m.started_at,
            "finished_at": m.finished_at, "size": m.size, "raw_size": m.raw_size, "tags": m.tags,
            "unchanged_from": m.facts.get("unchanged_from")}


def backup_summaries(ctx: Context, source: str | None = None) -> list[dict[str, Any]]:
    """Every committed backup (of ``source``), oldest first."""
    return [backup_summary(m) for m in ctx.repo.manifests(source)]


def drill_reports(ctx: Context, source: str | None = None) -> list[dict[str, Any]]:
    """Every stored drill report (of ``source``), oldest first, as ``drills/<source>/<id>.json`` holds it."""
    prefix = f"drills/{source}/" if source else "drills/"
    keys = sorted((i.key for i in ctx.store.list(prefix) if i.key.endswith(".json")),
                  key=lambda k: (k.rsplit("/", 1)[-1], k))

    def fetch(key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(ctx.store.get_bytes(key))
        except (ValueError, ObjectNotFound):
            return None
        return data if isinstance(data, dict) else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [r for r in pool.map(fetch, keys) if r is not None]
