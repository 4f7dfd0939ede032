"""The daemon's view of source health: a snapshot it keeps, judged by the one evaluator.

At start the snapshot is seeded from the repository (every manifest) and the audit trail
(failed backups of the last 30 days); each run then adds its successes and failures, so a
freshness check reads nothing. :meth:`DaemonHealth.check` asks
:func:`posterity.operations.health.evaluate` — the function ``posterity status`` and the
dashboard ask — and renders its answer as the ``posterity_source_stale`` and
``posterity_source_state`` metrics, the ``/healthz?sources`` body and the "stale" alert.

Bounded: the snapshot keeps the newest ``KEEP_BACKUPS`` backups and ``KEEP_FAILURES``
failures per source (enough for the size trend and the last failure).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from ..errors import PosterityError
from ..operations.context import Context
from ..operations.health import ArchivingFact, BackupFact, HealthSnapshot, StatusReport, evaluate
from .metrics import Metrics
from .notify import Notifier

log = logging.getLogger("posterity.daemon")

KEEP_BACKUPS = 64
KEEP_FAILURES = 8
FAILURE_LOOKBACK = timedelta(days=30)


class DaemonHealth:
    def __init__(self, ctx: Context, metrics: Metrics, notifier: Notifier) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.notifier = notifier
        self._lock = threading.Lock()
        self._backups: dict[str, deque[BackupFact]] = {}
        self._failures: dict[str, deque[dict[str, Any]]] = {}
        self._archiving: dict[str, ArchivingFact] = {}  # the archiving watch's newest sample per source
        self._stale_alerted: set[str] = set()
        self.failing: dict[str, bool] = {}  # newest outcome per source was a failure ("works again" notice)
        self.report: StatusReport | None = None
        metrics.health = self.states

    # -- the snapshot -----------------------------------------------------------------
    def seed(self, now: datetime) -> None:
        """Start from what the repository knows: backups, failed backups, total size."""
        from ..operations.audit import read_audit

        try:
            manifests = self.ctx.repo.manifests()
            records = read_audit(self.ctx, since=now - FAILURE_LOOKBACK, op="backup")
        except PosterityError as exc:
            log.warning("Could not read the repository at start-up (%s); continuing.", exc.message)
            return
        total = 0
        for m in manifests:
            total += m.size
            self._add_backup(BackupFact.of(m))
        for source, facts in self._backups.items():
            newest = max(facts, key=lambda b: (b.finished_at, b.id))
            self.metrics.last_success.labels(source).set(newest.finished.timestamp())
            self.metrics.last_size.labels(source).set(newest.size)
        self.metrics.repository_size.set(total)
        for r in records:
            src = r.get("source")
            if src:
                self.failing[src] = r.get("result") == "failed"
                if self.failing[src]:
                    self._add_failure(dict(r))

    def _add_backup(self, fact: BackupFact) -> None:
        with self._lock:
            self._backups.setdefault(fact.source, deque(maxlen=KEEP_BACKUPS)).append(fact)

    def _add_failure(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._failures.setdefault(str(record["source"]), deque(maxlen=KEEP_FAILURES)).append(record)

    def succeeded(self, manifest: Any) -> bool:
        """Record a committed backup; the source is fresh again. True when it had been failing."""
        fact = BackupFact.of(manifest)
        self._add_backup(fact)
        self.metrics.last_success.labels(fact.source).set(fact.finished.timestamp())
        self.metrics.last_size.labels(fact.source).set(fact.size)
        self.metrics.stale.labels(fact.source).set(0)
        self._stale_alerted.discard(fact.source)
        was_failing = self.failing.get(fact.source, False)
        self.failing[fact.source] = False
        return was_failing

    def failed(self, source: str, when: datetime, error: PosterityError) -> None:
        self.failing[source] = True
        self._add_failure({"time": when.isoformat(), "source": source, "result": "failed", "error": str(error)})

    def pruned(self, report: Any) -> None:
        """Forget the backups a prune removed, as the repository has."""
        gone = {(b.source, b.id) for b in report.backups if b.action == "removed"}
        if not gone:
            return
        with self._lock:
            for source, facts in self._backups.items():
                kept = [b for b in facts if (source, b.id) not in gone]
                self._backups[source] = deque(kept, maxlen=KEEP_BACKUPS)

    def archived(self, source: str, fact: ArchivingFact) -> None:
        """The archiving watch's newest sample (``background.py``)."""
        with self._lock:
            self._archiving[source] = fact

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            backups = {s: list(d) for s, d in self._backups.items()}
            failures = sorted((r for d in self._failures.values() for r in d), key=lambda r: str(r.get("time", "")))
            archiving = dict(self._archiving)
        return HealthSnapshot(backups, failures, archiving=archiving)

    def evaluate(self, now: datetime) -> StatusReport:
        return evaluate(self.ctx.config, self.snapshot(), now)

    # -- rendering --------------------------------------------------------------------
    def check(self, now: datetime) -> StatusReport:
        """Set the per-source metrics and send the "stale" alert once per stale spell: a source
        never backed up is stale (status: NEVER), with or without max_age; one with backups is
        stale once its newest is older than max_age."""
        report = self.report = self.evaluate(now)
        for st in report.sources:
            if not st.configured:
                continue
            source = st.source
            self.metrics.stale.labels(source).set(1 if st.stale else 0)
            self.metrics.source_state(source, st.state)
            if st.stale and source not in self._stale_alerted:
                self._stale_alerted.add(source)
                if st.last_success is None:
                    log.warning("%s is stale: it has never been backed up.", source)
                    self.notifier.event("stale", f"{source}: no fresh backup",
                                        f"{source} has never been backed up successfully.")
                    continue
                when = datetime.fromisoformat(st.last_success.time).isoformat(timespec="seconds")
                log.warning("%s is stale: last successful backup %s, max_age %s.", source, when, st.max_age)
                self.notifier.event("stale", f"{source}: no fresh backup",
                                    f"The newest backup of {source} is from {when}, older than max_age {st.max_age}.")
            elif not st.stale:
                self._stale_alerted.discard(source)
        return report

    def states(self) -> dict[str, str]:
        """Per configured source, its state at the last check (``/healthz?sources``)."""
        report = self.report
        return {} if report is None else {s.source: s.state for s in report.sources if s.configured}
