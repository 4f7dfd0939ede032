"""A drill's report (``drills/<source>/<id>.json``) and its checks, typed.

``run_drill`` fills a ``DrillReport`` and stores ``to_dict()``; the listing
(``operations.catalog.drill_reports``), ``operations.drill.last_drill`` and the dashboard read
the stored JSON back with ``from_dict``, so every reader gets the same type and
``to_dict()`` gives back the stored JSON, key for key.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import __version__


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    value: Any = None


def range_check(name: str, value: float, chk: Any) -> CheckResult:
    """A user check's answer against its ``min``/``max``."""
    bad = []
    if chk.min is not None and value < chk.min:
        bad.append(f"below the minimum {chk.min:g}")
    if chk.max is not None and value > chk.max:
        bad.append(f"above the maximum {chk.max:g}")
    return CheckResult(name, not bad, f"{value:g} " + (", ".join(bad) if bad else "within range"), value)


@dataclass
class DrillReport:
    id: str
    source: str
    kind: str
    backup: str
    target: str = ""
    started_at: str = ""
    finished_at: str = ""
    restore_seconds: float | None = None
    total_seconds: float | None = None
    bytes: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    ok: bool = False
    error: str | None = None
    cleanup: str = "nothing to clean up"
    warnings: list[str] = field(default_factory=list)
    host: str = field(default_factory=socket.gethostname)
    posterity_version: str = __version__
    key: str = ""
    #: keys of a stored report this version does not know, kept as stored (a newer version wrote it)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as ``drills/<source>/<id>.json`` holds it (and the dashboard's /api/drills)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["checks"] = [asdict(c) for c in self.checks]
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DrillReport:
        """A stored report read back (a key it lacks takes the field's default)."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        known["checks"] = [CheckResult(**c) for c in data.get("checks") or []]
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})


@dataclass(frozen=True)
class DrillSummary:
    """The newest drill of a source as ``posterity status`` shows it: when, whether it passed,
    and its RTO (``restore_seconds``)."""

    id: str
    backup: str
    time: str
    ok: bool
    restore_seconds: float | None
    error: str | None

    @classmethod
    def of(cls, report: DrillReport) -> DrillSummary:
        return cls(id=report.id, backup=report.backup, time=report.finished_at or report.started_at,
                   ok=bool(report.ok), restore_seconds=report.restore_seconds, error=report.error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
