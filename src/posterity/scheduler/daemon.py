"""``posterity daemon``: run the [[schedule]] jobs on time, and say what happened.

How it behaves, and why:
- **On time**: each job's next run is its cron expression's next fire time in [daemon]
  timezone, plus a random delay up to ``jitter``. The loop sleeps until the nearest run
  (at most 30 s, so a clock jump or suspend is noticed).
- **One catch-up, never a burst**: the nominal time of each job's last finished run is
  kept in ``<state_dir>/scheduler.json``. At start-up a job that missed one or more runs
  while the daemon was down runs once, now. A loop that wakes late (suspend) also runs a
  job once and plans the next run after *now*, skipping the missed ones.
- **Never two runs of one job at once**: a run due while the previous one still goes is
  skipped and counted (``posterity_job_skipped_total``). Two jobs that share a source
  take turns on it (an in-process lock per source); another host is kept out by the
  repository's per-source backup lock, and two hosts never prune together (lock
  ``prune``).
- **Retries with backoff** on transient errors only (store or source unreachable, a lock
  held by another host): ``retries`` times, waiting ``retry_backoff`` doubled each time.
- **Prune after the job** for the job's sources, when ``[daemon] prune`` is on.
- **Every run is bounded**: a job's ``timeout`` (``[[schedule]] timeout``) cancels it
  (``DeadlineExceeded``): the run is recorded failed and notified. Any exception a job
  raises, expected or not, is logged, recorded and notified; none dies with its thread.
- **SIGTERM stops cleanly, in bounded time**: no new run starts; a backup in flight gets
  ``stop_timeout`` to finish, then its job's ``CancelToken`` is cancelled (``Abandoned``):
  the dump process is killed, the stream raises between chunks and the backup unwinds
  (payloads removed, nothing committed, lock released); after ``CANCEL_GRACE`` more
  seconds the daemon exits regardless. Its run is not recorded, so the next start catches
  it up. The generated unit's ``TimeoutStopSec`` is ``stop_timeout`` + 10 s, above both.
- **Reports**: logs to stdout, notifications (``notify``), healthchecks pings, Prometheus
  metrics and ``/healthz`` (``metrics``). Whether a source is fresh, stale, never backed up
  or failing is judged by ``operations/health.py`` — the evaluator ``posterity status`` and
  the dashboard ask — over a snapshot the daemon keeps (``health.py``).
- **Bounded memory**: the newest ``RUN_HISTORY`` runs are kept; the health snapshot keeps a
  bounded number of backups and failures per source.
- Drill and prune steps are in ``steps.py``; background tasks and their supervisor in
  ``background.py``.

When each job runs is planned in ``plan.py``. The clock is injected (``cron.ManualClock``
in tests) and ``tick()`` is one turn of the loop, so schedules are tested without waiting.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config.durations import parse_duration
from ..errors import (
    DeadlineExceeded,
    LockHeld,
    PosterityError,
    SourceUnreachable,
    StorageUnreachable,
)
from ..operations import cancel
from ..operations.backup import BackupResult, backup_source
from ..operations.context import Context
from ..operations.health import size_anomaly
from ..operations.prune import PruneReport, prune
from .background import supervise
from .cron import Clock, SystemClock
from .health import DaemonHealth
from .metrics import Metrics
from .notify import Notifier, ping
from .plan import MAX_SLEEP, Job, Scheduler, ScheduleState, jobs_from_config
from .steps import drill_sources, prune_after, unexpected

__all__ = ["CANCEL_GRACE", "Abandoned", "Daemon", "Job", "JobRun", "ScheduleState", "Scheduler", "jobs_from_config"]

log = logging.getLogger("posterity.daemon")

TRANSIENT = (StorageUnreachable, SourceUnreachable, LockHeld)
MAX_BACKOFF = 600.0
RUN_HISTORY = 100  # finished runs kept in memory (tests and debugging look at them)
CANCEL_GRACE = 5.0  # after stop_timeout: seconds a cancelled run gets to unwind (unit: stop_timeout + 10 s)


class Abandoned(KeyboardInterrupt):
    """Raised inside a run that outlived the stop timeout: the backup is abandoned uncommitted."""


@dataclass
class JobRun:
    job: str
    nominal: datetime
    backups: dict[str, BackupResult] = field(default_factory=dict)
    errors: dict[str, PosterityError] = field(default_factory=dict)
    prune: PruneReport | None = None
    abandoned: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.abandoned


def background_tasks(ctx: Context, alert: Callable[[str, str, str], Any] | None = None,
                     metrics: Metrics | None = None, health: Any = None) -> list[Callable[[threading.Event], None]]:
    """Long-running work beside the cron jobs (WAL streamers, the archiving watch, the doctor's
    checks at start): each callable runs in its own thread until the event is set."""
    from .background import tasks

    return tasks(ctx, alert, metrics, health)


class Daemon:
    def __init__(
        self,
        ctx: Context,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        backup: Callable[..., BackupResult] = backup_source,
        prune_fn: Callable[..., PruneReport] = prune,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.ctx = ctx
        cfg = ctx.config.daemon
        self.clock: Clock = clock or SystemClock()
        self.jobs = jobs_from_config(ctx.config)
        self.state = ScheduleState(ctx.state_dir / "scheduler.json")
        self.scheduler = Scheduler(self.jobs, self.clock, self.state, tz=cfg.timezone, catch_up=cfg.catch_up, rng=rng)
        self.backup = backup
        self.prune_fn = prune_fn
        self.notifier = notifier if notifier is not None else Notifier.from_config(ctx.config.notify)
        self.metrics = metrics or Metrics()
        self.retries = cfg.retries
        self.backoff = parse_duration(cfg.retry_backoff).total_seconds()
        self.stop_timeout = parse_duration(cfg.stop_timeout).total_seconds()
        self.check_interval = parse_duration(cfg.check_interval)
        self.stop_event = threading.Event()
        self.running: dict[str, threading.Thread] = {}
        self.tokens: dict[str, cancel.CancelToken] = {}
        self._wakes: dict[str, threading.Event] = {}  # set on stop or job timeout: ends a retry back-off
        self.runs: deque[JobRun] = deque(maxlen=RUN_HISTORY)  # the newest runs only: a daemon runs for months
        self._source_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self.health = DaemonHealth(ctx, self.metrics, self.notifier)
        self._started = self.clock.now()
        self._next_check = self._started
        self.metrics_address: tuple[str, int] | None = None
        self.web: Any = None  # the dashboard's server when [web] is configured
        self.background_threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Everything but the loop: seed state, serve metrics, launch catch-up runs."""
        self.ctx.repo  # noqa: B018 - build the shared store/repository before threads race for it
        self._seed()
        listen = self.ctx.config.daemon.metrics_listen
        if listen:
            self.metrics_address = self.metrics.serve(listen)
            log.info("Serving metrics on http://%s:%d/metrics and /healthz.", *self.metrics_address)
        if self.ctx.config.web is not None:
            from ..web.server import serve_for_daemon

            self.web = serve_for_daemon(self.ctx)
        for task in background_tasks(self.ctx, self.notifier.event, self.metrics, self.health):
            t = threading.Thread(target=supervise, args=(task, self.stop_event, self.notifier, self.clock_monotonic),
                                 daemon=True,
                                 name=getattr(task, "__name__", "background"))
            t.start()
            self.background_threads.append(t)
        for job, nominal in self.scheduler.start():
            log.info("Job %s missed its run(s) while the daemon was down; running it once now.", job.name)
            self._launch(job, nominal)
        for job in self.jobs:
            log.info("Job %s (%s, sources %s) next runs at %s.", job.name, job.cron.expr, ", ".join(job.sources),
                     self.scheduler.next[job.name].isoformat(timespec="seconds"))

    def run(self) -> None:
        self.start()
        while not self.stop_event.is_set():
            if self.clock.sleep(self.tick(), self.stop_event):
                break
        self.shutdown()

    def stop(self) -> None:
        self.stop_event.set()

    def tick(self) -> float:
        """One turn of the loop: launch due jobs, check freshness; seconds to sleep."""
        now = self.clock.now()
        self.metrics.beat()
        for job, nominal in self.scheduler.due(now):
            self._launch(job, nominal)
        if now >= self._next_check:
            self.check_freshness(now)
            self._next_check = now + self.check_interval
        for job in self.jobs:
            self.metrics.job_next.labels(job.name).set(self.scheduler.next[job.name].timestamp())
        until_check = (self._next_check - now).total_seconds()
        return max(0.0, min(self.scheduler.seconds_until_next(now), until_check, MAX_SLEEP))

    def wait_idle(self, timeout: float | None = None) -> None:
        for t in list(self.running.values()):
            t.join(timeout)

    def shutdown(self) -> None:
        """Stop within ``stop_timeout`` + ``CANCEL_GRACE`` seconds, whatever the runs do."""
        self.stop_event.set()
        for wake in list(self._wakes.values()):
            wake.set()
        live = [t for t in self.running.values() if t.is_alive()]
        if live:
            log.info("Stopping: waiting up to %.0fs for %d running job(s) to finish.", self.stop_timeout, len(live))
        deadline = self.clock_monotonic() + self.stop_timeout
        for t in live:
            t.join(max(0.0, deadline - self.clock_monotonic()))
        late = [name for name, t in self.running.items() if t.is_alive()]
        for name in late:
            log.warning("Abandoning the run of job %s: cancelling it; nothing of it is committed.", name)
            token = self.tokens.get(name)
            if token is not None:
                token.cancel(Abandoned(f"job {name} abandoned: the daemon is stopping"))
        final = self.clock_monotonic() + CANCEL_GRACE
        for name in late:
            t = self.running[name]
            t.join(max(0.0, final - self.clock_monotonic()))
            if t.is_alive():
                log.error("The run of job %s did not unwind within %.0fs; exiting anyway (its lock is taken over "
                          "as stale by the next run on this host).", name, CANCEL_GRACE)
        for t in self.background_threads:  # streamers store what they hold before they return
            t.join(max(0.0, final - self.clock_monotonic()))
        self.metrics.close()
        if self.web is not None:
            self.web.stop()
        log.info("Stopped.")

    @staticmethod
    def clock_monotonic() -> float:
        import time

        return time.monotonic()

    # -- jobs -------------------------------------------------------------------------
    def _launch(self, job: Job, nominal: datetime) -> None:
        current = self.running.get(job.name)
        if current is not None and current.is_alive():
            log.warning("Job %s: the previous run is still going; skipping the run due at %s.",
                        job.name, nominal.isoformat(timespec="seconds"))
            self.metrics.job_skipped.labels(job.name).inc()
            return
        t = threading.Thread(target=self.run_job, args=(job, nominal), name=f"job-{job.name}", daemon=True)
        self.running[job.name] = t
        t.start()

    def run_job(self, job: Job, nominal: datetime) -> JobRun:
        run = JobRun(job.name, nominal)
        token = cancel.CancelToken()
        self.tokens[job.name] = token
        wake = self._wakes[job.name] = threading.Event()
        token.on_cancel(wake.set)
        if self.stop_event.is_set():
            wake.set()
        if job.timeout is not None:
            limit = job.timeout
            token.deadline(limit.total_seconds(), lambda: DeadlineExceeded(
                f"Job {job.name} ran longer than its timeout ({limit}) and was stopped; nothing of the backup "
                "in flight was committed.", hint="Find out what was stuck, or raise the [[schedule]] timeout."))
        self.metrics.job_running.labels(job.name).set(1)
        log.info("Job %s started (due %s).", job.name, nominal.isoformat(timespec="seconds"))
        ping(job.ping_url, "start")
        try:
            with cancel.use(token):
                self._run_steps(job, run, token)
        except Abandoned:
            run.abandoned = True
        except Exception as exc:  # a bug, or an error nobody converted: record and tell, never lose it
            err = unexpected(exc)
            log.exception("Job %s failed unexpectedly", job.name)
            run.errors["job"] = err
            self.notifier.event("failure", f"job {job.name} failed",
                                f"Job {job.name} failed: {err.message}\nHint: {err.hint}")
        finally:
            token.close()
            self.metrics.job_running.labels(job.name).set(0)
        result = "abandoned" if run.abandoned else ("succeeded" if run.ok else "failed")
        self.metrics.job_runs.labels(job.name, result).inc()
        if not run.abandoned:
            self.state.record(job.name, nominal)  # an abandoned run is caught up at the next start
            ping(job.ping_url, "success" if run.ok else "fail")
        log.info("Job %s %s (%d backup(s), %d failure(s)).", job.name, result, len(run.backups), len(run.errors))
        self.runs.append(run)
        return run

    def _run_steps(self, job: Job, run: JobRun, token: cancel.CancelToken) -> None:
        for source in job.sources if job.backup else ():
            if self.stop_event.is_set():
                run.abandoned = True
                break
            if token.cancelled:  # the job's timeout: the sources not reached fail too
                if isinstance(token.error, PosterityError):
                    run.errors[source] = token.error
                    self._on_failure(job, source, token.error)
                continue
            try:
                res = self._backup_with_retries(job, source)
            except PosterityError as exc:
                run.errors[source] = exc
                self._on_failure(job, source, exc)
            except Exception as exc:
                log.exception("%s: the backup failed unexpectedly", source)
                err = unexpected(exc)
                run.errors[source] = err
                self._on_failure(job, source, err)
            else:
                run.backups[source] = res
                self._on_success(source, res)
        if job.drill and not run.abandoned and not self.stop_event.is_set() and not token.cancelled:
            drill_sources(self, job, run)
        if (job.backup and self.ctx.config.daemon.prune and not run.abandoned and not self.stop_event.is_set()
                and not token.cancelled):
            run.prune = prune_after(self, job)

    def _backup_with_retries(self, job: Job, source: str) -> BackupResult:
        delay = self.backoff
        attempt = 0
        while True:
            lock = self._source_locks[source]
            token = cancel.current()
            while not lock.acquire(timeout=0.5):
                if self.stop_event.is_set():
                    raise Abandoned()
                if token is not None:
                    token.check()
            try:
                if token is not None:
                    token.check()
                res = self.backup(self.ctx, source, tags=list(job.tags))
                log.info("%s: backup %s stored %d bytes in %.1fs.", source, res.manifest.id, res.manifest.size,
                         res.seconds)
                return res
            except TRANSIENT as exc:
                if attempt >= self.retries or self.stop_event.is_set():
                    raise
                attempt += 1
                log.warning("%s: %s — retry %d/%d in %.0fs.", source, exc.message, attempt, self.retries, delay)
            finally:
                lock.release()
            if self.clock.sleep(delay, self._wakes.get(job.name, self.stop_event)):
                if self.stop_event.is_set():
                    raise Abandoned()
                if token is not None:
                    token.check()  # the job's timeout ran out during the back-off
            delay = min(delay * 2, MAX_BACKOFF)

    # -- outcomes ---------------------------------------------------------------------
    def _on_success(self, source: str, res: BackupResult) -> None:
        m = res.manifest
        self.metrics.last_duration.labels(source).set(res.seconds)
        self.metrics.backups.labels(source).inc()
        if self.health.succeeded(m):
            self.notifier.event("recovery", f"{source}: backups work again",
                                f"Backup {m.id} of {source} succeeded after earlier failures.")
        self.notifier.event("success", f"{source}: backup {m.id}", f"{m.size} bytes stored in {res.seconds:.1f}s.")
        n = self.ctx.config.notify
        try:
            sizes = [x.size for x in self.ctx.repo.manifests(source)][-(n.size_anomaly_window + 1):]
        except PosterityError:
            return
        median = size_anomaly(sizes, n.size_anomaly_ratio, n.size_anomaly_window)
        if median is not None and sizes and sizes[-1] == m.size:
            self.notifier.event(
                "size_anomaly", f"{source}: backup {m.id} is unusually small",
                f"Backup {m.id} of {source} stored {m.size} bytes, below {n.size_anomaly_ratio:.0%} of the median "
                f"{median:.0f} of the previous ones — an empty or truncated dump? Check it with `posterity show {m.id}`.",
            )

    def _on_failure(self, job: Job, source: str, exc: PosterityError) -> None:
        log.error("%s: backup failed: %s", source, exc.message)
        self.metrics.failures.labels(source).inc()
        self.health.failed(source, self.clock.now(), exc)
        self.notifier.event("failure", f"{source}: backup failed",
                            f"Job {job.name}: the backup of {source} failed: {exc.message}\nHint: {exc.hint}")

    def check_freshness(self, now: datetime) -> None:
        """The stale metrics and alert, from the evaluator ``posterity status`` asks (``health.py``)."""
        self.health.check(now)

    def _seed(self) -> None:
        """Start from what the repository knows: last successes, failing sources, size."""
        self.health.seed(self.clock.now())
