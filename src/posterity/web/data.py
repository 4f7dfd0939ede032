"""What the dashboard shows, read through the same operations the CLI uses.

Every ``Dashboard`` method returns plain JSON-ready data in the shape the matching CLI
command prints with ``--json`` (``/api/status`` is ``posterity --json status``), so a page,
its ``/api/…`` twin and the terminal can never disagree. Reads are cached for
``[web] cache_seconds`` (see ``cache.py``); nothing here writes to the repository.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import kinds
from ..operations.context import Context
from .cache import TTLCache

log = logging.getLogger(__name__)

AUDIT_DEFAULT_SINCE = timedelta(days=30)
FAILURE_LOOKBACK = timedelta(days=30)


class Dashboard:
    def __init__(self, ctx: Context, cache_seconds: float = 30.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.ctx = ctx
        self.cache = TTLCache(cache_seconds)
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- the CLI's --json shapes -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``posterity --json status``: the one health evaluator every surface asks
        (``operations/health.py``)."""
        from ..operations.status import status

        return self.cache.get("status", lambda: status(self.ctx, now=self.clock()).to_dict())

    def backups(self, source: str) -> list[dict[str, Any]]:
        """``posterity --json list --source SOURCE``."""
        from ..operations.catalog import backup_summaries

        return self.cache.get(("backups", source), lambda: [b.to_dict() for b in backup_summaries(self.ctx, source)])

    def backup_seconds(self, source: str, backup_id: str) -> float:
        """How long one backup took (one manifest, from the local manifest cache when there)."""
        from ..repository import layout

        def read() -> float:
            m = self.ctx.repo.read_manifest(layout.manifest_key(source, backup_id))
            return round((m.finished - m.started).total_seconds(), 3)

        return self.cache.get(("seconds", source, backup_id), read)

    def retention(self, source: str) -> dict[str, Any]:
        """``posterity --json prune --dry-run --source SOURCE``: what the policy keeps and why."""
        from ..operations.prune import prune

        return self.cache.get(("prune", source),
                              lambda: prune(self.ctx, dry_run=True, sources=[source]).to_dict())

    def drills(self, source: str | None = None) -> list[dict[str, Any]]:
        """Every stored drill report (``drills/<source>/<id>.json``), oldest first."""
        from ..operations.catalog import drill_reports

        return self.cache.get(("drills", source), lambda: [r.to_dict() for r in drill_reports(self.ctx, source)])

    def points(self) -> list[dict[str, Any]]:
        """``posterity --json list --points``."""
        from ..operations.points import list_points

        return self.cache.get("points", lambda: [p.to_dict() for p in list_points(self.ctx.repo)])

    def audit(self, *, since: datetime | None = None, op: str | None = None, source: str | None = None,
              result: str | None = None) -> list[dict[str, Any]]:
        """``posterity --json audit --since … --op … --source …``, optionally only one ``result``
        (succeeded / failed)."""
        from ..operations.audit import read_audit

        since = since or datetime.now(UTC) - AUDIT_DEFAULT_SINCE
        # Cache by day so the key does not change every second.
        key = ("audit", since.strftime("%Y-%m-%dT%H"), op, source)
        records = self.cache.get(key, lambda: read_audit(self.ctx, since=since, op=op, source=source))
        return [r.to_dict() for r in records if result is None or r.result == result]

    def verifications(self) -> list[dict[str, Any]]:
        """``posterity --json audit --op verify``: every verify run, what it read and what it found."""
        return self.audit(op="verify")

    def wal(self, source: str) -> dict[str, Any]:
        """``posterity --json wal status --source SOURCE`` (it asks the server too, with its timeouts)."""
        from ..operations.wal_status import wal_status

        return self.cache.get(("wal", source), lambda: wal_status(self.ctx, source).to_dict())

    def warm(self) -> None:
        """Read what the pages need once, so the first views do not wait (server start-up)."""
        from ..errors import PosterityError

        try:
            self.overview()
            for name in sorted(self.ctx.config.sources):
                self.backups(name)
                self.audit(op="backup", source=name, result="failed")
                self.retention(name)
            self.drills()
            self.verifications()
            self.audit()
        except PosterityError as exc:  # the page that needs it will say so
            log.warning("dashboard: warming the cache failed: %s", exc.message)

    # -- what only the dashboard combines -----------------------------------------------

    def next_runs(self, now: datetime | None = None) -> dict[str, dict[str, str]]:
        """Per source, the next scheduled backup ([[schedule]] jobs, in [daemon] timezone)."""
        from ..scheduler.cron import parse_cron

        now = now or datetime.now(UTC)
        cfg = self.ctx.config
        out: dict[str, dict[str, str]] = {}
        for job in cfg.schedule:
            if not job.backup:
                continue
            when = parse_cron(job.cron).next_after(now, cfg.daemon.timezone).astimezone(UTC)
            for source in job.sources or sorted(cfg.sources):
                if source not in out or out[source]["time"] > when.isoformat():
                    out[source] = {"job": job.name, "time": when.isoformat()}
        return out

    def overview(self) -> dict[str, Any]:
        """Status per source plus schedule, WAL recovery point and the newest restore point."""
        st = self.status()
        nexts = self.next_runs()
        wal: dict[str, Any] = {}
        for name, cfg in self.ctx.config.sources.items():
            if kinds.of(cfg).wal_archive:
                wal[name] = _wal_summary(self._safe_wal(name))
        points = self.points()
        newest = points[-1] if points else None
        sources = {s["source"] for s in st["sources"]}
        restorable = None
        if newest is not None:
            members = {b["source"] for b in newest.get("backups", [])}
            restorable = {"point": newest["id"], "time": newest.get("finished_at") or newest.get("started_at"),
                          "sources": sorted(members), "missing": sorted(sources - members)}
        return {"status": st, "next_runs": nexts, "wal": wal, "restore_point": restorable}

    def _safe_wal(self, name: str) -> dict[str, Any]:
        from ..errors import PosterityError

        try:
            return self.wal(name)
        except PosterityError as exc:
            return {"source": name, "error": exc.message}


def _wal_summary(ws: dict[str, Any]) -> dict[str, Any]:
    """RPO (age of the newest stored WAL) and the archiving backlog from ``wal status``."""
    if "error" in ws:
        return {"error": ws["error"]}
    server = ws.get("server") or {}
    backlog = ws.get("ready_files")
    if backlog is None:
        backlog = server.get("lag_segments")
    return {"rpo_seconds": ws.get("newest_age_seconds"), "newest": ws.get("newest"),
            "newest_archived_at": ws.get("newest_archived_at"), "backlog": backlog,
            "gaps": len(ws.get("gaps") or []), "server_reachable": server.get("reachable"),
            "failing": bool(server.get("failing") or (ws.get("stream") or {}).get("failing"))}
