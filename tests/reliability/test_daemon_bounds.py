"""The daemon never waits without a bound and never loses a failure with a thread.

- a job whose backup is stuck (pg_dump blocked on a lock, then SIGSTOPped) is cancelled
  by its `[[schedule]] timeout`: recorded failed, notified, lock released, no payload;
- a job whose backup raises something outside the error tree is recorded and notified;
- `posterity daemon` on SIGTERM with that stuck backup in flight exits within
  stop_timeout + CANCEL_GRACE (below the generated unit's TimeoutStopSec), its lock and
  payloads gone;
- `posterity_source_stale` is 1 for a source never backed up, as `status` says NEVER.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from tests.reliability.harness import Setup
from tests.reliability.test_cancel import _children, _comm
from tests.reliability.test_kill import pg_dump_waits, wait_for

from posterity.errors import DeadlineExceeded, PosterityError
from posterity.scheduler.daemon import CANCEL_GRACE, Daemon
from posterity.scheduler.metrics import Metrics
from posterity.scheduler.notify import Notifier

SCHEDULE = """
[[schedule]]
name = "often"
cron = "* * * * * *"
sources = ["db"]
timeout = "{timeout}"

[daemon]
metrics_listen = ""
prune = false
retries = 0
stop_timeout = "{stop}"
"""


@dataclass
class Recorder(Notifier):
    events_seen: list[tuple[str, str, str]] = field(default_factory=list)

    def event(self, kind: str, title: str, body: str) -> bool:
        self.events_seen.append((kind, title, body))
        return True


def _daemon(s: Setup) -> tuple[Daemon, Recorder]:
    rec = Recorder([], set())
    return Daemon(s.context(), notifier=rec, metrics=Metrics()), rec


def _stop_pg_dump_when_it_waits(dsn: str, pid: int) -> int:
    wait_for(lambda: pg_dump_waits(dsn), what="pg_dump to wait for its lock")
    (dump,) = [p for p in _children(pid) if _comm(p) == "pg_dump"]
    os.kill(dump, signal.SIGSTOP)
    return dump


def test_a_job_timeout_cancels_a_stuck_backup_records_and_notifies(local_setup: Setup, module_db):
    s = local_setup
    s.more_sources = SCHEDULE.format(timeout="3s", stop="2s")
    s.write_config()
    d, rec = _daemon(s)
    blocker = psycopg.connect(module_db.dsn)
    result: list = []
    try:
        blocker.execute("lock table posters in access exclusive mode")
        import threading

        t = threading.Thread(target=lambda: result.append(d.run_job(d.jobs[0], datetime.now(UTC))))
        t0 = time.monotonic()
        t.start()
        _stop_pg_dump_when_it_waits(module_db.dsn, os.getpid())
        t.join(30)
        elapsed = time.monotonic() - t0
    finally:
        blocker.rollback()
        blocker.close()
    assert not t.is_alive() and elapsed < 15, elapsed
    (run,) = result
    assert isinstance(run.errors["db"], DeadlineExceeded), run.errors
    assert "Job often ran longer than its timeout (0:00:03)" in run.errors["db"].message
    assert [(k, title) for k, title, _ in rec.events_seen] == [("failure", "db: backup failed")]
    assert d.metrics.job_runs.labels("often", "failed")._value.get() == 1
    assert s.keys("backups/") == [] and s.keys("locks/") == []
    assert [p for p in _children(os.getpid()) if _comm(p) == "pg_dump"] == []


def test_an_unexpected_exception_in_a_job_is_recorded_and_notified(local_setup: Setup):
    s = local_setup
    s.more_sources = SCHEDULE.format(timeout="1m", stop="2s")
    s.write_config()
    rec = Recorder([], set())

    def broken(ctx, source, tags):
        raise subprocess.TimeoutExpired(["pg_ctl", "start"], 30)

    d = Daemon(s.context(), notifier=rec, metrics=Metrics(), backup=broken)
    run = d.run_job(d.jobs[0], datetime.now(UTC))
    err = run.errors["db"]
    assert isinstance(err, PosterityError) and "unexpected TimeoutExpired" in err.message
    assert rec.events_seen and rec.events_seen[0][:2] == ("failure", "db: backup failed")
    assert "please report it" in rec.events_seen[0][2]
    assert d.metrics.failures.labels("db")._value.get() == 1


def test_the_daemon_stops_within_its_bound_and_cleans_up_a_stuck_backup(local_setup: Setup, module_db):
    s = local_setup
    s.more_sources = SCHEDULE.format(timeout="1h", stop="2s")
    s.write_config()
    blocker = psycopg.connect(module_db.dsn)
    try:
        blocker.execute("lock table posters in access exclusive mode")
        proc = s.popen("daemon")
        dump = _stop_pg_dump_when_it_waits(module_db.dsn, proc.pid)
        assert [k for k in s.keys("locks/")] == ["locks/backup-db.json"]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        blocker.rollback()
        blocker.close()
    assert elapsed < 2 + CANCEL_GRACE + 3, (elapsed, out[-2000:])
    assert proc.returncode == 0, err
    assert "Abandoning the run of job often: cancelling it" in out, out[-2000:]
    assert "Stopped." in out
    assert not Path(f"/proc/{dump}").exists() or _comm(dump) == ""
    assert s.keys("locks/") == []
    assert s.keys("backups/") == []


def test_source_stale_metric_is_1_for_a_source_never_backed_up(local_setup: Setup):
    s = local_setup
    s.source_extra = 'max_age = "1d"'
    s.more_sources = SCHEDULE.format(timeout="1h", stop="2s")
    s.write_config()
    r = s.run("status")
    assert r.code == 12 and "never" in r.text.lower(), r
    d, rec = _daemon(s)
    d.check_freshness(datetime.now(UTC))
    assert d.metrics.stale.labels("db")._value.get() == 1
    assert [k for k, _, _ in rec.events_seen] == ["stale"]


def test_generated_units_leave_room_for_the_bounded_stops(local_setup: Setup):
    """The daemon's unit waits longer than the daemon takes to stop; a timer's oneshot
    service is bounded by the job's timeout (it had no start limit at all)."""
    from posterity.config.durations import parse_duration
    from posterity.scheduler.systemd import units

    s = local_setup
    s.more_sources = SCHEDULE.format(timeout="2h", stop="20s")
    s.write_config()
    ctx = s.context()
    out = units(ctx.config, s.config, "/usr/local/bin/posterity")
    stop = parse_duration(ctx.config.daemon.stop_timeout).total_seconds()
    unit_stop = int(out["posterity-daemon.service"].split("TimeoutStopSec=")[1].split()[0])
    assert unit_stop > stop + CANCEL_GRACE
    job = out["posterity-often.service"]
    assert "TimeoutStartSec=7260" in job and "TimeoutStopSec=30" in job


def test_source_stale_metric_is_1_for_a_never_backed_up_source_without_max_age(local_setup: Setup):
    s = local_setup
    s.more_sources = SCHEDULE.format(timeout="1h", stop="2s")
    s.write_config()
    assert s.run("status").code == 12
    d, rec = _daemon(s)
    d.check_freshness(datetime.now(UTC))
    assert d.metrics.stale.labels("db")._value.get() == 1
    assert [(k, t) for k, t, _ in rec.events_seen] == [("stale", "db: no fresh backup")]
    s.backup()
    d2, rec2 = _daemon(s)
    d2._seed()
    d2.check_freshness(datetime.now(UTC))
    assert d2.metrics.stale.labels("db")._value.get() == 0 and rec2.events_seen == []


def test_a_job_timeout_ends_a_retry_back_off(local_setup: Setup):
    """Store unreachable, retry_backoff 30s, timeout 2s: the run ends at the deadline, not
    after the back-off (a 10-minute back-off used to outlive any job timeout)."""
    from posterity.errors import StorageUnreachable

    s = local_setup
    s.more_sources = SCHEDULE.format(timeout="2s", stop="2s").replace("retries = 0", "retries = 3") + \
        'retry_backoff = "30s"\n'
    s.write_config()
    rec = Recorder([], set())
    calls: list[float] = []

    def unreachable(ctx, source, tags):
        calls.append(time.monotonic())
        raise StorageUnreachable("store down")

    d = Daemon(s.context(), notifier=rec, metrics=Metrics(), backup=unreachable)
    t0 = time.monotonic()
    run = d.run_job(d.jobs[0], datetime.now(UTC))
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed
    assert len(calls) == 1
    assert isinstance(run.errors["db"], DeadlineExceeded), run.errors
    assert [k for k, _, _ in rec.events_seen] == ["failure"]
