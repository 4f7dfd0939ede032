"""Restore drills: prove a backup restores, measure how long it takes (the real RTO).

A drill restores one backup into a throwaway target, checks the result, stores a report at
``drills/<source>/<drill-id>.json`` (written once) plus an audit record, and removes
everything it created — also when it fails. It exits non-zero when anything failed.

Each source kind registers its drill once, as ``"module:function"`` in its source registry
entry (``SourceEntry.drill``, imported only when used). The function receives the
``DrillRun`` and fills in ``restore_seconds``, ``bytes`` and ``checks``; it raises a
``PosterityError`` for a failure that stops the drill, and cleans up its own target.

``run_drill`` returns a ``DrillOutcome`` (the stored report and, when the drill failed, the
error to show); ``drill`` raises that error. The identity pre-check is the one every restore
runs (``operations.guarded.precheck``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError, PosterityError, RestoreFailed, reworded
from ..repository import Manifest, layout, new_backup_id
from ..sources.registry import SOURCES, load
from .context import Context
from .drill_report import DrillReport
from .guarded import precheck
from .progress import NoProgress, Progress

log = logging.getLogger(__name__)

#: kind → "module:function" taking a DrillRun, from the source registry.
DRILLS: dict[str, str] = {kind: e.drill for kind, e in SOURCES.items() if e.drill}


@dataclass
class DrillRun:
    """What a kind's drill function gets: where to read, what to fill in."""

    ctx: Context
    config: Any
    manifest: Manifest
    identities: list
    report: DrillReport
    progress: Progress
    identity_file: str | None = None  # the --identity given, if any (a restore_command may need the file)


def drillable_sources(ctx: Context) -> list[str]:
    return sorted(n for n, cfg in ctx.config.sources.items() if cfg.kind in DRILLS)


@dataclass(frozen=True)
class DrillOutcome:
    """A stored drill report and, when the drill failed, the error that says so."""

    report: DrillReport
    error: PosterityError | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()


def drill(
    ctx: Context,
    source: str,
    point: str = "latest",
    *,
    identity_file: str | None = None,
    progress: Progress | None = None,
) -> DrillReport:
    """Drill one source; returns the stored report, raises when the drill failed."""
    outcome = run_drill(ctx, source, point, identity_file=identity_file, progress=progress)
    if outcome.error is not None:
        raise outcome.error
    return outcome.report


def run_drill(
    ctx: Context,
    source: str,
    point: str = "latest",
    *,
    identity_file: str | None = None,
    progress: Progress | None = None,
) -> DrillOutcome:
    """Drill one source and store its report. Raises only before a drill starts (bad source,
    no key, no backup) and on an interrupt; a failed drill is an outcome with its error."""
    progress = progress or NoProgress()
    cfg = ctx.config.source(source)
    target = DRILLS.get(cfg.kind)
    if target is None:
        raise ConfigError(
            f"There is no drill for sources of kind {cfg.kind!r} yet (source {source!r}).",
            hint=f"Drills exist for: {', '.join(sorted(DRILLS))}. Use `posterity verify --read-data` meanwhile.",
        )
    repo = ctx.repo
    repo.descriptor()
    identities = ctx.identities(identity_file)  # refuse before any work when there is no key
    manifest = _resolve(ctx, source, point)
    precheck(identities, manifest)
    started = datetime.now(UTC)
    report = DrillReport(
        id=new_backup_id(started),
        source=source,
        kind=cfg.kind,
        backup=manifest.id,
        started_at=started.isoformat(),
    )
    t0 = time.monotonic()
    fn: Callable[[DrillRun], None] = load(target)
    failure: BaseException | None = None
    try:
        fn(DrillRun(ctx, cfg, manifest, identities, report, progress, identity_file))
    except PosterityError as exc:
        failure = exc
        report.error = f"{type(exc).__name__}: {exc.message}"
    except KeyboardInterrupt as exc:
        failure = exc
        report.error = "interrupted"
    report.total_seconds = round(time.monotonic() - t0, 3)
    report.finished_at = datetime.now(UTC).isoformat()
    report.ok = failure is None and all(c.ok for c in report.checks)
    _store(ctx, report)
    if isinstance(failure, PosterityError):
        # A new error of the same type (same exit code and hint) that names the drill.
        message = f"Drill of {source} (backup {manifest.id}) failed: {failure.message} Report: {report.key}."
        return DrillOutcome(report, reworded(failure, message))
    if failure is not None:
        raise failure  # an interrupt: the report is stored, the interrupt goes on
    if not report.ok:
        bad = [c for c in report.checks if not c.ok]
        failed = RestoreFailed(
            f"Drill of {source} (backup {manifest.id}): {len(bad)} check(s) failed: "
            + "; ".join(f"{c.name}: {c.detail}" for c in bad)
            + f". Report: {report.key}.",
            hint="The backup does not hold what the checks expect; inspect it with `posterity "
            "restore` into a new target (database, folder, or index with --as), and fix the cause "
            "before you need it.",
        )
        return DrillOutcome(report, failed)
    return DrillOutcome(report)


def _resolve(ctx: Context, source: str, point: str) -> Manifest:
    """``latest``, a backup id (prefix), or a restore point id naming a backup of ``source``."""
    if point != "latest" and ctx.repo.has_point(point):
        from .points import find_point

        member = find_point(ctx.repo, point).member(source)
        return ctx.repo.find(member.backup, source)
    return ctx.repo.find(point, source)


def _store(ctx: Context, report: DrillReport) -> None:
    report.key = layout.drill_key(report.source, report.id)
    body = json.dumps(report.to_dict(), indent=2, default=str).encode() + b"\n"
    try:
        ctx.repo.write_drill(report.source, report.id, body)
    except PosterityError as exc:
        log.warning("Could not store the drill report %s (%s).", report.key, exc.message)
        report.warnings.append(f"the report could not be stored: {exc.message}")
    ctx.repo.audit(
        "drill",
        "succeeded" if report.ok else "failed",
        {
            "source": report.source,
            "backup": report.backup,
            "drill": report.id,
            "report": report.key,
            "target": report.target,
            "restore_seconds": report.restore_seconds,
            "checks_failed": [c.name for c in report.checks if not c.ok],
            "error": report.error,
        },
    )


def last_drill(ctx: Context, source: str) -> DrillReport | None:
    """The newest stored drill report of ``source`` (for ``posterity status``)."""
    found = ctx.repo.drill_reports(source, last=True)
    return DrillReport.from_dict(found[0]) if found else None
