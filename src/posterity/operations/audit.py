"""Read the audit trail: one write-once record per operation, in the repository under
``audit/<yyyy-mm-dd>/`` and mirrored locally in ``<state_dir>/audit.jsonl``.

The repository copy is authoritative (every host writes there); the local mirror answers
without the network and keeps records the store could not take.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from .context import Context

_DAY = re.compile(r"^audit/(\d{4}-\d{2}-\d{2})/")


def _matches(rec: dict[str, Any], since: datetime | None, op: str | None, source: str | None) -> bool:
    if op and rec.get("operation") != op:
        return False
    if source and rec.get("source") != source and source not in (rec.get("sources") or []):
        return False
    if since is not None:
        try:
            if datetime.fromisoformat(str(rec.get("time"))) < since:
                return False
        except ValueError:
            return False
    return True


def read_audit(
    ctx: Context,
    *,
    since: datetime | None = None,
    op: str | None = None,
    source: str | None = None,
    local: bool = False,
) -> list[dict[str, Any]]:
    """Audit records, oldest first. ``since`` must be timezone-aware."""
    records = _read_local(ctx, since, op, source) if local else _read_repository(ctx, since, op, source)
    records.sort(key=lambda r: str(r.get("time", "")))
    return records


def _read_repository(ctx: Context, since: datetime | None, op: str | None, source: str | None) -> list[dict[str, Any]]:
    ctx.repo.descriptor()
    first_day = f"{since:%Y-%m-%d}" if since else None
    found = ctx.repo.audit_records(ctx.repo.audit_keys(first_day, op))
    return [r for r in found if _matches(r, since, op, source)]


def _read_local(ctx: Context, since: datetime | None, op: str | None, source: str | None) -> list[dict[str, Any]]:
    path = ctx.repo.audit_log
    if path is None or not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash
            if isinstance(rec, dict) and _matches(rec, since, op, source):
                out.append(rec)
    return out
