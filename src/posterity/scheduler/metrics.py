"""Prometheus metrics and ``/healthz`` for the daemon (``prometheus-client``).

Each daemon owns one ``CollectorRegistry`` (not the global one), so several daemons in
one process — tests — never collide. Served on ``[daemon] metrics_listen``:

- ``GET /metrics``: the Prometheus text format;
- ``GET /healthz``: 200 while the scheduler loop is alive (it ticked recently), 503 if it
  is stuck; a backup that fails does not make the daemon unhealthy (alert on
  ``posterity_source_state`` or ``posterity_last_success_timestamp_seconds`` for that).
  ``GET /healthz?sources`` answers the same code with JSON: ``{"loop": "ok"|"stalled",
  "sources": {name: state}}``, each source's state at the last freshness check — the state
  ``posterity status`` shows (both ask ``operations/health.py``).

Alert example: ``time() - posterity_last_success_timestamp_seconds > 26 * 3600``.
WAL archiving (``wal = "archive"`` sources, sampled every minute): alert on
``posterity_wal_archiving_alerts > 0``, or on your own thresholds with
``posterity_wal_archiving_failing_seconds``, ``posterity_wal_ready_files``,
``posterity_wal_disk_used_ratio`` and ``posterity_wal_disk_seconds_left``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.last_success = Gauge("posterity_last_success_timestamp_seconds",
                                  "Unix time the newest successful backup of the source finished.", ["source"], registry=r)
        self.last_duration = Gauge("posterity_last_backup_duration_seconds",
                                   "Duration of the source's last successful backup.", ["source"], registry=r)
        self.last_size = Gauge("posterity_last_backup_size_bytes",
                               "Stored (compressed, encrypted) size of the source's last backup.", ["source"], registry=r)
        self.backups = Counter("posterity_backups", "Successful backups by this daemon.", ["source"], registry=r)
        self.failures = Counter("posterity_backup_failures", "Backups that failed after their retries.",
                                ["source"], registry=r)
        self.stale = Gauge("posterity_source_stale", "1 while the source's newest backup is older than max_age, or it has none.",
                           ["source"], registry=r)
        self.state = Gauge("posterity_source_state",
                           "1 for the source's health state (ok, never, stale, archiving, failing: as `posterity "
                           "status` says), 0 for the others.", ["source", "state"], registry=r)
        self.repository_size = Gauge("posterity_repository_size_bytes",
                                     "Bytes stored under backups/ and wal/ (as of the last prune).", registry=r)
        self.job_runs = Counter("posterity_job_runs", "Scheduled job runs by result.", ["job", "result"], registry=r)
        self.job_skipped = Counter("posterity_job_skipped",
                                   "Runs skipped because the job's previous run was still going.", ["job"], registry=r)
        self.job_running = Gauge("posterity_job_running", "1 while the job runs.", ["job"], registry=r)
        self.job_next = Gauge("posterity_job_next_run_timestamp_seconds", "Unix time of the job's next run.",
                              ["job"], registry=r)
        self.prune_deleted = Counter("posterity_prune_deleted_bytes", "Bytes deleted by prune.", registry=r)
        self.prune_locked = Gauge("posterity_prune_locked_objects",
                                  "Objects the last prune could not delete yet (bucket lock).", registry=r)
        self.wal_failing = Gauge("posterity_wal_archiving_failing_seconds",
                                 "How long archive_command has been failing, or the oldest .ready segment has waited "
                                 "(0 when neither).", ["source"], registry=r)
        self.wal_ready = Gauge("posterity_wal_ready_files", "WAL segments waiting to be archived (.ready files).",
                               ["source"], registry=r)
        self.wal_disk_used = Gauge("posterity_wal_disk_used_ratio", "How full pg_wal's file system is (0-1).",
                                   ["source"], registry=r)
        self.wal_disk_left = Gauge("posterity_wal_disk_seconds_left",
                                   "Seconds until pg_wal's file system is full at the current fill rate "
                                   "(+Inf when it is not filling).", ["source"], registry=r)
        self.wal_alerts = Gauge("posterity_wal_archiving_alerts", "Archiving alerts raised now (see the log).",
                                ["source"], registry=r)
        self.heartbeat = time.monotonic()
        self.health_window = 120.0
        self.health: Callable[[], dict[str, str]] = dict  # per-source states for /healthz?sources
        self._server: ThreadingHTTPServer | None = None

    def archiving(self, source: str, s: Any, alerts: int) -> None:
        """Record one archiving sample (``sources.postgres.archiving.ArchiveSample``)."""
        failing = s.time - s.failing_since if s.failing and s.failing_since else 0
        waited = s.time - s.oldest_ready if s.oldest_ready is not None else 0
        self.wal_failing.labels(source).set(max(failing, waited))
        if s.ready is not None:
            self.wal_ready.labels(source).set(s.ready)
        if s.wal_disk_used_fraction is not None:
            self.wal_disk_used.labels(source).set(s.wal_disk_used_fraction)
            self.wal_disk_left.labels(source).set(s.seconds_left if s.seconds_left is not None else float("inf"))
        self.wal_alerts.labels(source).set(alerts)

    def source_state(self, source: str, state: str) -> None:
        from ..operations.health import STATES

        for s in STATES:
            self.state.labels(source, s).set(1 if s == state else 0)

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.heartbeat < self.health_window

    def serve(self, listen: str) -> tuple[str, int]:
        """Start serving in a background thread; returns the bound (host, port)."""
        host, _, port = listen.rpartition(":")
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, status, ctype = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    ok = metrics.healthy()
                    status = 200 if ok else 503
                    if self.path.partition("?")[2].split("&")[0].split("=")[0] == "sources":
                        body = json.dumps({"loop": "ok" if ok else "stalled", "sources": metrics.health()}).encode()
                        ctype = "application/json"
                    else:
                        body, ctype = (b"ok\n" if ok else b"scheduler loop stalled\n"), "text/plain"
                else:
                    body, status, ctype = b"not found; try /metrics or /healthz\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("metrics: " + format, *args)

        self._server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port or 0)), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
