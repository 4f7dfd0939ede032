"""Read the audit trail: one write-once record per operation, in the repository under
``audit/<yyyy-mm-dd>/`` and mirrored locally in ``<state_dir>/audit.jsonl``.

The repository copy is authoritative (every host writes there); the local mirror answers
without the network and keeps records the store could not take.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .context import Context

_DAY = re.compile(r"^audit/(\d{4}-\d{2}-\d{2})/")


@dataclass(frozen=True, eq=False)  # compares as a Mapping: equal to the stored dict
class AuditRecord(Mapping[str, Any]):
    """One audit record as stored. The common fields are typed properties; the rest
    (source, backup, error, removed, …) depend on the operation and stay as written. It reads
    like the stored JSON object too (a Mapping), which the health evaluator takes from the
    daemon's own records as well."""

    fields: dict[str, Any]

    @property
    def time(self) -> str:
        return str(self.fields.get("time", ""))

    @property
    def operation(self) -> str:
        return str(self.fields.get("operation", "?"))

    @property
    def result(self) -> str:
        return str(self.fields.get("result", "?"))

    @property
    def who(self) -> str:
        return f"{self.fields.get('user', '?')}@{self.fields.get('host', '?')}"

    @property
    def source(self) -> str | None:
        return self.fields.get("source")

    def details(self) -> dict[str, Any]:
        """What the operation recorded beyond who, when and where (empty values left out)."""
        skip = {"time", "host", "user", "operation", "result", "key", "repository"}
        return {k: v for k, v in self.fields.items() if k not in skip and v not in (None, [], {}, "")}

    def to_dict(self) -> dict[str, Any]:
        """``posterity audit --json``: the record as stored (plus its ``key``)."""
        return dict(self.fields)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


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
) -> list[AuditRecord]:
    """Audit records, oldest first. ``since`` must be timezone-aware."""
    records = _read_local(ctx, since, op, source) if local else _read_repository(ctx, since, op, source)
    records.sort(key=lambda r: str(r.get("time", "")))
    return [AuditRecord(r) for r in records]


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
