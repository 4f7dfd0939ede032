"""When each [[schedule]] job runs: cron + jitter, one catch-up after downtime, no bursts.

No threads and no I/O but the state file (``<state_dir>/scheduler.json``, the nominal time
of each job's last finished run); the clock is injected. ``daemon.py`` runs what this plans.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..config.durations import parse_duration
from ..errors import ConfigError
from .cron import Clock, CronSpec, parse_cron

log = logging.getLogger("posterity.daemon")
MAX_SLEEP = 30.0


@dataclass(frozen=True)
class Job:
    name: str
    cron: CronSpec
    sources: tuple[str, ...]
    tags: tuple[str, ...]
    jitter: timedelta = timedelta(0)
    ping_url: str | None = None
    backup: bool = True
    drill: bool = False
    timeout: timedelta | None = None


def jobs_from_config(config: Any) -> list[Job]:
    jobs = []
    configured = set(config.sources)
    for i, s in enumerate(config.schedule):
        unknown = [x for x in s.sources if x not in configured]
        if unknown:
            raise ConfigError(
                f"schedule[{i}] ({s.name}) names source(s) {', '.join(unknown)}, which are not configured.",
                hint=f"Configured sources: {', '.join(sorted(configured)) or 'none'}.",
            )
        jobs.append(Job(s.name, parse_cron(s.cron), tuple(s.sources or sorted(configured)),
                        (s.tag,) if s.tag else (), parse_duration(s.jitter), s.ping_url,
                        getattr(s, "backup", True), getattr(s, "drill", False),
                        parse_duration(s.timeout) if getattr(s, "timeout", None) else None))
    return jobs


class ScheduleState:
    """The nominal time of each job's last finished run, kept across restarts."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text())
                self.data = {k: str(v) for k, v in raw.get("last_run", {}).items()}
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("Ignoring the unreadable scheduler state %s (%s).", path, exc)

    def last(self, job: str) -> datetime | None:
        v = self.data.get(job)
        try:
            return datetime.fromisoformat(v) if v else None
        except ValueError:
            return None

    def record(self, job: str, when: datetime) -> None:
        with self._lock:
            self.data[job] = when.astimezone(UTC).isoformat()
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"last_run": self.data}, indent=2) + "\n")
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("Could not save the scheduler state %s (%s).", self.path, exc)


class Scheduler:
    """When each job runs next: cron + jitter, one catch-up, no bursts. No threads, no I/O
    but the state file; ``clock`` gives the time."""

    def __init__(self, jobs: list[Job], clock: Clock, state: ScheduleState, *, tz: str = "UTC",
                 catch_up: bool = True, rng: random.Random | None = None) -> None:
        self.jobs = jobs
        self.clock = clock
        self.state = state
        self.tz = tz
        self.catch_up = catch_up
        self.rng = rng or random.Random()
        self.nominal: dict[str, datetime] = {}
        self.next: dict[str, datetime] = {}

    def _plan(self, job: Job, after: datetime) -> None:
        nominal = job.cron.next_after(after, self.tz)
        self.nominal[job.name] = nominal
        self.next[job.name] = nominal + job.jitter * self.rng.random()

    def start(self) -> list[tuple[Job, datetime]]:
        """Plan every job; return the catch-up runs due now (one per job that missed runs)."""
        now = self.clock.now()
        due = []
        for job in self.jobs:
            last = self.state.last(job.name)
            if self.catch_up and last is not None and job.cron.fires_between(last, now, self.tz, limit=1):
                due.append((job, now))
            self._plan(job, now)
        return due

    def due(self, now: datetime) -> list[tuple[Job, datetime]]:
        """Jobs whose time has come, each once, with their nominal time; re-planned after now."""
        out = []
        for job in self.jobs:
            if self.next[job.name] <= now:
                out.append((job, self.nominal[job.name]))
                self._plan(job, now)
        return out

    def seconds_until_next(self, now: datetime) -> float:
        if not self.next:
            return MAX_SLEEP
        return max(0.0, (min(self.next.values()) - now).total_seconds())
