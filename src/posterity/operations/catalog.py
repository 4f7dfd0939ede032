"""The catalog as typed records: one summary per committed backup, and the stored drill
reports. ``posterity list --json`` and the dashboard's ``/api/sources/<name>/backups`` print
the same records, so both read them here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..repository import Manifest
from .context import Context
from .drill_report import DrillReport


@dataclass(frozen=True)
class BackupSummary:
    """One committed backup, as ``posterity list --json`` prints it (``to_dict``)."""

    id: str
    source: str
    kind: str
    started_at: str
    finished_at: str
    size: int
    raw_size: int
    tags: list[str] = field(default_factory=list)
    unchanged_from: str | None = None  # a files backup that reuses an earlier one's payload

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup_summary(m: Manifest) -> BackupSummary:
    """What ``posterity list --json`` prints for one backup."""
    return BackupSummary(id=m.id, source=m.source, kind=m.kind, started_at=m.started_at,
                         finished_at=m.finished_at, size=m.size, raw_size=m.raw_size, tags=m.tags,
                         unchanged_from=m.facts.get("unchanged_from"))


def backup_summaries(ctx: Context, source: str | None = None) -> list[BackupSummary]:
    """Every committed backup (of ``source``), oldest first."""
    return [backup_summary(m) for m in ctx.repo.manifests(source)]


def drill_reports(ctx: Context, source: str | None = None) -> list[DrillReport]:
    """Every stored drill report (of ``source``), oldest first; ``to_dict()`` is what
    ``drills/<source>/<id>.json`` holds."""
    return [DrillReport.from_dict(r) for r in ctx.repo.drill_reports(source)]
