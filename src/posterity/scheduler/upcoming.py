"""When each ``[[schedule]]`` job runs next, as the daemon computes it (before jitter).

``posterity schedule next`` renders the ``UpcomingRuns`` (``--json``: ``{job: to_dict()}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class UpcomingRuns:
    """One job's next ``count`` start times (UTC; the cron is read in the daemon's timezone)."""

    job: str
    cron: str
    sources: list[str]
    tags: list[str]
    next: list[datetime]

    def to_dict(self) -> dict[str, Any]:
        return {"cron": self.cron, "sources": list(self.sources), "tags": list(self.tags),
                "next": [x.isoformat() for x in self.next]}


def upcoming_runs(config: Any, count: int, now: datetime | None = None) -> list[UpcomingRuns]:
    """The next ``count`` runs of every configured job, in configuration order."""
    from .plan import jobs_from_config

    tz = config.daemon.timezone
    out = []
    for job in jobs_from_config(config):
        t = now or datetime.now(UTC)
        times = []
        for _ in range(count):
            t = job.cron.next_after(t, tz)
            times.append(t)
        out.append(UpcomingRuns(job.name, job.cron.expr, list(job.sources), list(job.tags), times))
    return out
