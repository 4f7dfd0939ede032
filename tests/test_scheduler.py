"""The scheduler: next-run computation, catch-up, no overlap, retries and clean stops with a
controllable clock; then a real daemon process against the sample database."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.support.ops import config_text, make_context, make_keys

from posterity.errors import DumpFailed, StorageUnreachable
from posterity.operations.audit import read_audit
from posterity.operations.backup import BackupResult
from posterity.repository import Manifest
from posterity.scheduler.cron import ManualClock, parse_cron
from posterity.scheduler.daemon import Abandoned, Daemon, Job, Scheduler, ScheduleState
from posterity.scheduler.metrics import Metrics
from posterity.scheduler.notify import Notifier
from posterity.scheduler.systemd import cron_to_oncalendar

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday


# ------------------------------------------------------------------ next-run computation


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        ("0 2 * * *", "UTC", T0, datetime(2024, 3, 5, 2, 0, tzinfo=UTC)),
        ("0 3 * * 0", "UTC", T0, datetime(2024, 3, 10, 3, 0, tzinfo=UTC)),
        ("*/15 * * * *", "UTC", T0 + timedelta(minutes=1), T0 + timedelta(minutes=15)),
        ("*/10 * * * * *", "UTC", T0 + timedelta(seconds=1), T0 + timedelta(seconds=10)),
        # 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer.
        ("0 2 * * *", "Europe/Berlin", T0, datetime(2024, 3, 5, 1, 0, tzinfo=UTC)),
        ("0 2 * * *", "Europe/Berlin", datetime(2024, 7, 1, 12, tzinfo=UTC), datetime(2024, 7, 2, 0, 0, tzinfo=UTC)),
        ("0 2 * * *", "UTC", datetime(2024, 3, 5, 2, 0, tzinfo=UTC), datetime(2024, 3, 6, 2, 0, tzinfo=UTC)),
    ],
)
def test_next_run_is_the_next_fire_time_strictly_after(expr, tz, after, expected):
    assert parse_cron(expr).next_after(after, tz) == expected


@pytest.mark.parametrize("bad", ["0 2 * *", "61 * * * *", "0 2 * * * * *", "every day"])
def test_bad_cron_expressions_are_refused(bad):
    with pytest.raises(ValueError, match="cron expression"):
        parse_cron(bad)


def job(name="daily", expr="0 2 * * *", jitter=timedelta(0), sources=("db",)):
    return Job(name, parse_cron(expr), sources, ("daily",), jitter)


def test_one_catch_up_run_after_downtime_not_a_burst(tmp_path):
    state = ScheduleState(tmp_path / "scheduler.json")
    state.record("daily", T0 - timedelta(days=3))  # three nightly runs were missed
    state.record("hourly", T0)  # its 12:00 run finished; nothing missed by 12:05
    now = T0 + timedelta(minutes=5)
    clock = ManualClock(now)
    jobs = [job(), job("hourly", "0 * * * *"), job("new", "0 4 * * *")]
    sched = Scheduler(jobs, clock, ScheduleState(tmp_path / "scheduler.json"))
    # daily catches up once, now; hourly missed nothing; a job never run before does not catch up.
    assert [(j.name, t) for j, t in sched.start()] == [("daily", now)]
    assert sched.next == {
        "daily": datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
        "hourly": T0 + timedelta(hours=1),
        "new": datetime(2024, 3, 5, 4, 0, tzinfo=UTC),
    }
    assert Scheduler(jobs, clock, state, catch_up=False).start() == []


def test_a_late_wake_up_runs_each_job_once_and_plans_after_now(tmp_path):
    clock = ManualClock(T0)
    sched = Scheduler([job("hourly", "0 * * * *")], clock, ScheduleState(None))
    assert sched.start() == []
    assert sched.due(T0 + timedelta(minutes=59)) == []
    late = T0 + timedelta(hours=5, minutes=10)  # suspended through five fire times
    (run,) = sched.due(late)
    assert run[1] == T0 + timedelta(hours=1)
    assert sched.next["hourly"] == T0 + timedelta(hours=6)
    assert sched.due(late + timedelta(minutes=1)) == []


def test_jitter_delays_within_its_bound_and_state_survives_restarts(tmp_path):
    clock = ManualClock(T0)
    sched = Scheduler([job(jitter=timedelta(minutes=10))], clock, ScheduleState(None), rng=random.Random(7))
    sched.start()
    nominal = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    assert sched.nominal["daily"] == nominal
    assert nominal < sched.next["daily"] <= nominal + timedelta(minutes=10)
    path = tmp_path / "s.json"
    ScheduleState(path).record("daily", nominal)
    assert ScheduleState(path).last("daily") == nominal


# ------------------------------------------------------------------ the daemon, with fakes


def fake_result(source: str, size: int = 1000) -> BackupResult:
    now = datetime.now(UTC).isoformat()
    m = Manifest(id="20240304T120000Z-0000", source=source, kind="postgres", started_at=now, finished_at=now,
                 posterity_version="test", host="h", artifacts=[])
    return BackupResult(m, 0.01)


@pytest.fixture
def daemon_ctx(tmp_path):
    recipient, identity = make_keys(tmp_path)
    extra = """
[[schedule]]
name = "hourly"
cron = "0 * * * *"
sources = ["db"]
[daemon]
metrics_listen = ""
retries = 2
retry_backoff = "30s"
stop_timeout = "1s"
"""
    ctx = make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state",
                                   {"db": "postgresql://127.0.0.1:1/x"}, extra))
    ctx.repo.init([recipient])
    return ctx


def make_daemon(ctx, clock, backup, prunes=None):
    def prune_fn(ctx, sources):
        (prunes if prunes is not None else []).append(sources)
        from posterity.operations.prune import PruneReport

        return PruneReport(dry_run=False)

    return Daemon(ctx, clock=clock, backup=backup, prune_fn=prune_fn, notifier=Notifier([], set()), metrics=Metrics())


def test_a_run_due_while_the_previous_one_still_goes_is_skipped(daemon_ctx):
    clock = ManualClock(T0, auto=False)
    release = threading.Event()
    started: list[datetime] = []

    def slow_backup(ctx, source, tags):
        started.append(clock.now())
        assert release.wait(10)
        return fake_result(source)

    prunes: list = []
    d = make_daemon(daemon_ctx, clock, slow_backup, prunes)
    d.start()
    clock.set(T0 + timedelta(hours=1))
    d.tick()  # 13:00: the run starts and blocks
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    clock.set(T0 + timedelta(hours=2))
    d.tick()  # 14:00: still running, so skipped
    assert d.metrics.job_skipped.labels("hourly")._value.get() == 1
    release.set()
    d.wait_idle(5)
    clock.set(T0 + timedelta(hours=3))
    d.tick()  # 15:00 runs again
    d.wait_idle(5)
    assert started == [T0 + timedelta(hours=1), T0 + timedelta(hours=3)]
    assert [r.nominal for r in d.runs] == [T0 + timedelta(hours=1), T0 + timedelta(hours=3)]
    assert prunes == [["db"], ["db"]]  # prune after each run, for the job's sources
    assert d.state.last("hourly") == T0 + timedelta(hours=3)
    d.shutdown()


def test_transient_errors_are_retried_with_backoff_and_others_are_not(daemon_ctx):
    clock = ManualClock(T0)
    calls: list[str] = []

    def flaky(ctx, source, tags):
        calls.append(source)
        if len(calls) < 3:
            raise StorageUnreachable("store down")
        return fake_result(source)

    d = make_daemon(daemon_ctx, clock, flaky)
    run = d.run_job(d.jobs[0], T0)
    assert run.ok and len(calls) == 3
    assert clock.slept == [30.0, 60.0]

    calls.clear()
    clock.slept.clear()

    def broken(ctx, source, tags):
        calls.append(source)
        raise DumpFailed("pg_dump exited 1")

    d = make_daemon(daemon_ctx, clock, broken)
    run = d.run_job(d.jobs[0], T0)
    assert not run.ok and isinstance(run.errors["db"], DumpFailed)
    assert len(calls) == 1 and clock.slept == []
    assert d.metrics.failures.labels("db")._value.get() == 1


def test_stop_abandons_a_run_that_outlives_the_stop_timeout_and_catches_it_up_later(daemon_ctx):
    clock = ManualClock(T0, auto=False)
    seen: list[BaseException] = []
    entered = threading.Event()

    def endless(ctx, source, tags):
        from posterity.operations import cancel

        token = cancel.current()  # a real backup checks its token between chunks
        assert token is not None
        entered.set()
        try:
            while True:
                token.check()
                time.sleep(0.01)
        except BaseException as exc:
            seen.append(exc)  # a real backup removes its payloads and releases its lock here
            raise

    d = make_daemon(daemon_ctx, clock, endless)
    d.start()
    clock.set(T0 + timedelta(hours=1))
    d.tick()
    assert entered.wait(5)
    t0 = time.monotonic()
    d.shutdown()  # stop_timeout is 1s
    assert time.monotonic() - t0 < 10
    assert len(seen) == 1 and isinstance(seen[0], Abandoned)
    (run,) = d.runs
    assert run.abandoned and d.state.last("hourly") is None  # not recorded: the next start catches it up


def test_failure_recovery_and_size_anomaly_are_notified_to_a_webhook(daemon_ctx):
    from posterity.repository import ArtifactRecord

    collector = Collector()
    clock = ManualClock(T0)
    plan = [1000, 1000, 1000, None, 100]  # None: the dump fails

    def scripted(ctx, source, tags):
        size = plan.pop(0)
        if size is None:
            raise DumpFailed("pg_dump exited 1")
        clock.advance(60)
        when = clock.now()
        m = Manifest(id=f"{when:%Y%m%dT%H%M%SZ}-0000", source=source, kind="postgres", started_at=when.isoformat(),
                     finished_at=when.isoformat(), posterity_version="t", host="h",
                     artifacts=[ArtifactRecord("db", f"backups/{source}/x/db", "pg", size, "0" * 64, size, [])])
        ctx.repo.commit(m)
        return BackupResult(m, 0.01)

    notifier = Notifier([f"json://127.0.0.1:{collector.server_address[1]}/notify"],
                        {"failure", "recovery", "size_anomaly"})
    notifier._load()
    from posterity.operations.prune import PruneReport

    d = Daemon(daemon_ctx, clock=clock, backup=scripted, prune_fn=lambda ctx, sources: PruneReport(dry_run=False),
               notifier=notifier, metrics=Metrics())
    d.retries = 0
    for _ in range(5):
        d.run_job(d.jobs[0], clock.now())
    collector.shutdown()
    got = [(n["type"], n["title"]) for n in collector.notifications()]
    assert got == [
        ("failure", "[posterity] db: backup failed"),
        ("success", "[posterity] db: backups work again"),
        ("warning", "[posterity] db: backup 20240304T120400Z-0000 is unusually small"),
    ]
    anomaly = collector.notifications()[-1]["message"]
    assert "stored 100 bytes" in anomaly and "median 1000" in anomaly
    assert [s.delivered for s in notifier.sent] == [True, True, True]


# ------------------------------------------------------------------ systemd


@pytest.mark.parametrize(
    ("expr", "calendar"),
    [
        ("0 2 * * *", "*-*-* 02:00:00 UTC"),
        ("0 3 * * 0", "Sun *-*-* 03:00:00 UTC"),
        ("*/15 9-17 * * 1-5", "Mon..Fri *-*-* 09..17:00,15,30,45:00 UTC"),
        ("30 4 1 */3 *", "*-01,04,07,10-01 04:30:00 UTC"),
        ("*/20 0 3 * * *", "*-*-* 03:00:00,20,40 UTC"),
    ],
)
def test_cron_becomes_an_equivalent_systemd_oncalendar(expr, calendar):
    assert cron_to_oncalendar(expr) == calendar
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    analyze = subprocess.run(["systemd-analyze", "calendar", "--iterations=3", calendar],
                             capture_output=True, text=True, env={**os.environ, "TZ": "UTC"})
    assert analyze.returncode == 0, analyze.stderr
    # systemd's next elapses equal cron's next fire times.
    got = re.findall(r"(?:Next elapse|Iter\. #\d): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", analyze.stdout)
    spec, t, want = parse_cron(expr), datetime.now(UTC), []
    for _ in range(3):
        t = spec.next_after(t)
        want.append(t.strftime("%Y-%m-%d %H:%M:%S"))
    assert got == want


def test_cron_with_both_day_fields_is_refused_for_systemd():
    from posterity.errors import ConfigError

    with pytest.raises(ConfigError, match="split it"):
        cron_to_oncalendar("0 2 1 * 1")


# ------------------------------------------------------------------ a real daemon


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, bytes]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def notifications(self) -> list[dict]:
        return [json.loads(body) for m, p, body in list(self.requests) if m == "POST" and p == "/notify"]

    def pings(self) -> list[str]:
        return [p for m, p, _ in list(self.requests) if m == "GET"]


class _Handler(BaseHTTPRequestHandler):
    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record

    def log_message(self, *args) -> None:
        pass


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_daemon_backs_up_prunes_notifies_and_serves_metrics(tmp_path, sample_db):
    collector = Collector()
    recipient, identity = make_keys(tmp_path)
    extra = f"""
[retention]
keep_last = 2
[[schedule]]
name = "quick"
cron = "*/2 * * * * *"
sources = ["db", "down"]
tag = "daily"
ping_url = "{collector.url}/ping/quick"
[daemon]
metrics_listen = "127.0.0.1:0"
retries = 0
check_interval = "1s"
stop_timeout = "10s"
[notify]
urls = ["json://127.0.0.1:{collector.server_address[1]}/notify"]
events = ["failure", "stale", "success"]
"""
    text = config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state",
                       {"db": sample_db.dsn, "down": "postgresql://postgres@127.0.0.1:1/none"}, extra)
    text = text.replace('[sources.down]\n', '[sources.down]\nmax_age = "1s"\n')
    cfg = tmp_path / "posterity.toml"
    cfg.write_text(text)
    ctx = make_context(text)
    ctx.repo.init([recipient])
    # The daemon last ran an hour ago: ~1800 runs were missed, exactly one catch-up is due.
    ScheduleState(tmp_path / "state" / "scheduler.json").record("quick", datetime.now(UTC) - timedelta(hours=1))

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from posterity.cli.main import main; main()", "--config", str(cfg), "daemon"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        port = int(wait_for(lambda: next((m.group(1) for ln in lines if (m := re.search(
            r"metrics on http://127\.0\.0\.1:(\d+)/metrics", ln))), None), 20, "the metrics line"))

        def backups_done() -> list[dict]:
            ok = [r for r in read_audit(ctx, op="backup") if r["result"] == "succeeded"]
            prunes = [r for r in read_audit(ctx, op="prune") if r.get("removed")]
            return ok if len(ok) >= 3 and prunes else []

        ok = wait_for(backups_done, 40, "three backups and a prune that removed one")
        # keep_last = 2: the first backups are gone, and the newest are there.
        existing = [m.id for m in ctx.repo.manifests("db")]
        assert ok[0]["backup"] not in existing and len(existing) <= 3
        assert all(m.tags == ["daily"] for m in ctx.repo.manifests("db"))

        notes = wait_for(lambda: [n for n in collector.notifications() if "no fresh backup" in n["title"]] and
                         collector.notifications(), 15, "a staleness notification")
        titles = [n["title"] for n in notes]
        assert "[posterity] down: backup failed" in titles
        assert "[posterity] down: no fresh backup" in titles
        assert any(t.startswith("[posterity] db: backup 20") for t in titles)
        failure = next(n for n in notes if n["title"] == "[posterity] down: backup failed")
        assert failure["type"] == "failure" and "Job quick" in failure["message"]
        pings = collector.pings()
        assert "/ping/quick/start" in pings and "/ping/quick/fail" in pings  # "down" fails every run

        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        last = float(re.search(r'posterity_last_success_timestamp_seconds\{source="db"\} (\S+)', metrics).group(1))
        assert abs(last - time.time()) < 60
        assert float(re.search(r'posterity_backup_failures_total\{source="down"\} (\S+)', metrics).group(1)) >= 1
        assert float(re.search(r'posterity_backups_total\{source="db"\} (\S+)', metrics).group(1)) >= 3
        assert float(re.search(r"^posterity_repository_size_bytes (\S+)$", metrics, re.M).group(1)) > 0
        assert re.search(r'posterity_job_runs_total\{job="quick",result="failed"\} [1-9]', metrics)
        assert re.search(r'posterity_source_stale\{source="down"\} 1\.0', metrics)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.text == "ok\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        collector.shutdown()
    out = "".join(lines)
    assert code == 0, out
    assert out.count("missed its run(s) while the daemon was down; running it once now") == 1
    assert "Received SIGTERM; stopping." in out and out.rstrip().endswith("Stopped.")
    assert list((tmp_path / "repo" / "locks").glob("*")) == []  # every lock released
    assert json.loads((tmp_path / "state" / "scheduler.json").read_text())["last_run"]["quick"]
    assert Path(tmp_path / "state" / "audit.jsonl").is_file()


def test_schedule_systemd_writes_a_service_and_timer_per_job(tmp_path):
    from click.testing import CliRunner

    from posterity.cli.main import State, cli

    recipient, identity = make_keys(tmp_path)
    extra = """
[[schedule]]
name = "daily"
cron = "0 2 * * *"
tag = "daily"
jitter = "5m"
[[schedule]]
name = "weekly"
cron = "0 3 * * 0"
sources = ["db"]
tag = "weekly"
[daemon]
timezone = "Europe/Berlin"
[sources.pitr]
kind = "postgres-physical"
dsn = "postgresql://replicator@h/postgres"
wal = "stream"
"""
    cfg = tmp_path / "posterity.toml"
    cfg.write_text(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state",
                               {"db": "postgresql://h/db", "other": "postgresql://h/o"}, extra))
    out = tmp_path / "units"
    result = CliRunner().invoke(cli, ["--config", str(cfg), "schedule", "systemd", "-o", str(out),
                                      "--binary", "/usr/bin/posterity"], obj=State())
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "posterity-daemon.service", "posterity-daily.service", "posterity-daily.timer",
        "posterity-walstream-pitr.service", "posterity-weekly.service", "posterity-weekly.timer"]
    service = (out / "posterity-daily.service").read_text()
    assert f"ExecStart=/usr/bin/posterity --config {cfg} backup --tag daily db other pitr\n" in service
    assert f"ExecStart=/usr/bin/posterity --config {cfg} prune --source db --source other --source pitr\n" in service
    stream = (out / "posterity-walstream-pitr.service").read_text()
    assert f"ExecStart=/usr/bin/posterity --config {cfg} wal stream --source pitr\n" in stream
    assert "Restart=always\n" in stream
    timer = (out / "posterity-daily.timer").read_text()
    assert "OnCalendar=*-*-* 02:00:00 Europe/Berlin\n" in timer
    assert "RandomizedDelaySec=300\n" in timer and "Persistent=true\n" in timer
    assert "OnCalendar=Sun *-*-* 03:00:00 Europe/Berlin\n" in (out / "posterity-weekly.timer").read_text()
    assert f"ExecStart=/usr/bin/posterity --config {cfg} daemon\n" in (out / "posterity-daemon.service").read_text()

    result = CliRunner().invoke(cli, ["--config", str(cfg), "schedule", "next", "--json"], obj=State())
    nxt = json.loads(result.output)
    first = datetime.fromisoformat(nxt["daily"]["next"][0])
    assert first.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "02:00"


def test_a_drill_job_drills_each_source_and_a_failed_drill_fails_the_job(daemon_ctx, monkeypatch):
    import posterity.operations.drill as drill_mod
    from posterity.errors import RestoreFailed
    from posterity.scheduler.daemon import Job

    drilled: list[str] = []
    outcomes = [None, RestoreFailed("row counts differ")]

    def fake_drill(ctx, source, point="latest", **kw):
        drilled.append(source)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return drill_mod.DrillReport(id="d1", source=source, kind="postgres", backup="b1", ok=True,
                                     restore_seconds=1.5)

    monkeypatch.setattr(drill_mod, "drill", fake_drill)
    backups: list[str] = []
    clock = ManualClock(T0)
    d = make_daemon(daemon_ctx, clock, lambda ctx, source, tags: backups.append(source) or fake_result(source))
    job = Job("weekly-drill", d.jobs[0].cron, ("db",), (), backup=False, drill=True)
    first = d.run_job(job, clock.now())
    assert first.ok and drilled == ["db"] and backups == []
    second = d.run_job(job, clock.now())
    assert not second.ok and "drill:db" in second.errors and drilled == ["db", "db"]
