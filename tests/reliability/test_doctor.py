"""`posterity doctor` and the archiving alerts, against a real PostgreSQL 15 that archives
through the `posterity` installed by ``scripts/install`` (run by the postgres OS user).

One archiving cluster for the module. Each test breaks one thing — archive_command, a
privilege, the identity file's mode or owner, archiving itself — checks that doctor (or
status, or the daemon's archiving watch) names it with a hint, and puts it back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.install import installed_posterity
from tests.support.pitr import AS_ROOT, chown_owner, wait_archived

from posterity.pgcluster import TempCluster
from posterity.pipeline import generate_identity
from posterity.repository import walnames as wal
from posterity.repository.probe import PROBE_ENV

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="switching to the postgres OS user needs root")


class Doc:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.repo = work / "repo"
        self.config = work / "posterity.toml"
        self.key = work / "key.txt"
        self.posterity = str(installed_posterity())
        self.recipient = generate_identity(self.key)
        self.cluster: TempCluster | None = None
        self.dsn_pitr = ""
        self.dsn_db = ""
        self.extra = ""

    def write(self) -> None:
        # The test disk is shared with other work: only the test about it sets a disk threshold.
        extra = self.extra if "wal_disk_alert =" in self.extra else self.extra + "wal_disk_alert = 99\n"
        self.config.write_text(
            f'[repository]\nurl = "file://{self.repo}"\n\n'
            f'[encryption]\nrecipients = ["{self.recipient}"]\nidentity_file = "{self.key}"\n\n'
            f'[general]\nstate_dir = "{self.work / "state"}"\n\n'
            f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{self.dsn_pitr}"\n'
            f'data_directory = "{self.cluster.data_dir if self.cluster else ""}"\n{extra}\n'
            f'[sources.db]\nkind = "postgres"\ndsn = "{self.dsn_db}"\n')
        chown_owner(self.config)

    def run(self, *args: str, as_postgres: bool = False) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        env = {k: v for k, v in os.environ.items() if k not in ("POSTERITY_CONFIG", "POSTERITY_EXECUTABLE")}
        env["COLUMNS"] = "400"  # rich wraps tables to the terminal's width
        return subprocess.run([*prefix, self.posterity, "-c", str(self.config), *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False, cwd="/")

    def doctor(self, *args: str, as_postgres: bool = False) -> tuple[int, dict[str, dict[str, Any]]]:
        proc = self.run("--json", "doctor", *args, as_postgres=as_postgres)
        assert proc.returncode in (0, 15), proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["exit_code"] == proc.returncode
        return proc.returncode, {f"{c['source'] or '-'}/{c['name']}": c for c in report["checks"]}

    def set_archive_command(self, command: str) -> None:
        assert self.cluster is not None
        self.cluster.psql(f"alter system set archive_command = '{command}'")
        self.cluster.psql("select pg_reload_conf()")
        time.sleep(0.3)

    @property
    def good_command(self) -> str:
        return f"{self.posterity} -c {self.config} wal push --source pitr %p"


@pytest.fixture(scope="module")
def doc() -> Iterator[Doc]:
    work = Path(tempfile.mkdtemp(prefix="posterity-doctor-"))
    work.chmod(0o755)
    d = Doc(work)
    cluster = TempCluster(conf={"archive_mode": "on", "archive_command": d.good_command})
    d.cluster = cluster
    d.dsn_pitr = cluster.dsn(user="replicator")
    d.dsn_db = cluster.dsn()
    d.write()
    chown_owner(d.key)
    try:
        assert d.run("init").returncode == 0
        (d.repo / "wal").mkdir()
        subprocess.run(["chown", "-R", "postgres:postgres", str(d.repo)], check=True)
        cluster.start()
        cluster.psql("create role replicator with login replication")
        cluster.psql("create table t(id int primary key)")
        wait_archived(cluster)
        yield d
    finally:
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def _status(checks: dict[str, dict[str, Any]], key: str) -> str:
    assert key in checks, sorted(checks)
    return str(checks[key]["status"])


def test_doctor_passes_when_postgres_archives_through_the_installed_posterity(doc: Doc) -> None:
    code, checks = doc.doctor()
    failed = {k: c for k, c in checks.items() if c["status"] == "fail"}
    assert code == 0 and not failed, failed
    for key in ("-/repository reachable", "-/repository writable", "-/clock skew", "-/recipients", "-/identity",
                "pitr/replication privilege", "pitr/wal_level", "pitr/archive_mode", "pitr/archive_command runs",
                "pitr/archiver", "pitr/.ready backlog", "pitr/pg_wal disk", "db/table privileges", "db/pg_dump"):
        assert _status(checks, key) == "ok", checks[key]
    assert "as postgres" in checks["pitr/archive_command runs"]["detail"]
    # The dry run stored nothing: no probe object left, no WAL named like the fake segment.
    from posterity.operations.doctor_postgres import FAKE_SEGMENT

    assert not list((doc.repo / "probes").glob("*")) if (doc.repo / "probes").exists() else True
    assert not (doc.repo / wal.payload_key("pitr", FAKE_SEGMENT)).exists()
    assert (doc.repo / "wal" / "pitr").is_dir() and not list(doc.repo.rglob(f"*{FAKE_SEGMENT}*"))


@pytest.mark.parametrize("breakage", ["posterity-not-executable", "config-unreadable"])
def test_doctor_names_a_broken_archive_command(doc: Doc, breakage: str) -> None:
    private = doc.work / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    if breakage == "posterity-not-executable":
        shutil.copy(doc.posterity, private / "posterity")  # its folder is root's alone: exit 126 for postgres
        doc.set_archive_command(f"{private / 'posterity'} -c {doc.config} wal push --source pitr %p")
    else:
        shutil.copy(doc.config, private / "posterity.toml")
        doc.set_archive_command(f"{doc.posterity} -c {private / 'posterity.toml'} wal push --source pitr %p")
    try:
        code, checks = doc.doctor("--source", "pitr")
        assert code == 15
        c = checks["pitr/archive_command runs"]
        assert c["status"] == "fail" and "as postgres" in c["detail"], c
        if breakage == "posterity-not-executable":
            assert "exits 126" in c["detail"] and "scripts/install" in c["hint"], c
        else:
            # (the exit code and wording of an unreadable config are item 4's: not asserted here)
            assert "Permission denied" in c["detail"] and "private/posterity.toml" in c["detail"], c
        # What PostgreSQL itself meets, to be sure doctor is not crying wolf.
        assert doc.cluster is not None
        _wait_failed(doc.cluster)
    finally:
        doc.set_archive_command(doc.good_command)
        wait_archived(doc.cluster)  # type: ignore[arg-type]


def test_doctor_names_missing_privileges(doc: Doc) -> None:
    assert doc.cluster is not None
    doc.cluster.psql("create role norepl with login; create role reader with login; "
                     "create table secret(x int); create sequence secret_seq; grant select on t to reader")
    doc.dsn_pitr, doc.dsn_db = doc.cluster.dsn(user="norepl"), doc.cluster.dsn(user="reader")
    doc.write()
    try:
        code, checks = doc.doctor()
        assert code == 15
        repl = checks["pitr/replication privilege"]
        assert repl["status"] == "fail" and "norepl" in repl["detail"] and "REPLICATION" in repl["hint"], repl
        tables = checks["db/table privileges"]
        assert tables["status"] == "fail", tables
        listed = set(tables["detail"].split(" cannot read ")[1].split(";")[0].split(", "))
        assert {"public.secret", "public.secret_seq"} <= listed and "public.t" not in listed, tables
        assert "pg_read_all_data" in tables["hint"]
    finally:
        doc.dsn_pitr, doc.dsn_db = doc.cluster.dsn(user="replicator"), doc.cluster.dsn()
        doc.write()
        doc.cluster.psql("drop table secret; drop sequence secret_seq; revoke select on t from reader; "
                         "drop role reader; drop role norepl")


def test_doctor_names_an_unreadable_or_exposed_identity(doc: Doc) -> None:
    try:
        doc.key.chmod(0o644)
        code, checks = doc.doctor("--source", "db")
        assert code == 15
        ident = checks["-/identity"]
        assert ident["status"] == "fail" and "readable by every user" in ident["detail"], ident
        assert "chmod 600" in ident["hint"]
        # Owned by root, mode 600: the postgres user (running doctor) cannot read it.
        os.chown(doc.key, 0, 0)
        doc.key.chmod(0o600)
        code, checks = doc.doctor("--source", "db", as_postgres=True)
        assert code == 15
        ident = checks["-/identity"]
        assert ident["status"] == "fail" and "not readable by this user" in ident["detail"], ident
    finally:
        doc.key.chmod(0o600)
        chown_owner(doc.key)
    code, checks = doc.doctor("--source", "db", as_postgres=True)
    assert checks["-/identity"]["status"] == "ok", checks["-/identity"]


def _wait_failed(cluster: TempCluster) -> None:
    """Make a segment to archive and wait until PostgreSQL reports archive_command failing (in
    pg_stat_archiver, or only in its log: exit codes above 125 stop the archiver uncounted)."""
    before = int(cluster.psql("select failed_count from pg_stat_archiver"))
    offset = cluster.log_file.stat().st_size
    cluster.psql("create table if not exists churn(x int); insert into churn values (1)")
    cluster.psql("select pg_switch_wal()")
    deadline = time.monotonic() + 30
    while (int(cluster.psql("select failed_count from pg_stat_archiver")) == before
           and "archive command failed" not in cluster.log_file.read_text()[offset:]):
        assert time.monotonic() < deadline, f"archive_command did not fail:\n{cluster.log_file.read_text()[-2000:]}"
        time.sleep(0.2)


def test_status_alerts_when_archiving_fails_and_clears_when_fixed(doc: Doc) -> None:
    assert doc.cluster is not None
    doc.extra = 'archive_alert_after = "1s"\nready_alert = 1\nwal_disk_alert = 99\n'
    doc.write()
    broken = doc.work / "broken"
    broken.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(doc.posterity, broken / "posterity")
    doc.set_archive_command(f"{broken / 'posterity'} wal push %p")
    try:
        _wait_failed(doc.cluster)
        first = doc.run("--json", "status")
        time.sleep(1.2)
        proc = doc.run("--json", "status")
        assert proc.returncode == 13, proc.stdout + proc.stderr
        pitr = next(s for s in json.loads(proc.stdout)["sources"] if s["source"] == "pitr")
        assert pitr["state"] == "archiving", pitr
        kinds = {a["kind"] for a in pitr["archiving"]["alerts"]}
        assert {"failing", "backlog"} <= kinds, pitr["archiving"]
        assert pitr["archiving"]["ready"] >= 1 and pitr["archiving"]["oldest_ready_seconds"] >= 1
        # Exit 126 stops PostgreSQL's archiver without counting a failure: the waiting segment tells.
        assert pitr["archiving"]["failing_seconds"] is None  # pg_stat_archiver: no failure after the last success
        failing = next(a for a in pitr["archiving"]["alerts"] if a["kind"] == "failing")
        assert "126" in failing["message"] and "posterity doctor" in failing["hint"]
        assert first.returncode in (12, 13)
        # The human table names the alert too.
        table = doc.run("status").stdout
        assert "ARCHIVING" in table and "WAL archiving has failed" in table, table
    finally:
        doc.set_archive_command(doc.good_command)
        wait_archived(doc.cluster)
    deadline = time.monotonic() + 30
    while True:  # the archiver drains what waited (in seconds), then every alert clears
        proc = doc.run("--json", "status")
        pitr = next(s for s in json.loads(proc.stdout)["sources"] if s["source"] == "pitr")
        if pitr["state"] == "never" and pitr["archiving"]["alerts"] == []:
            break
        assert time.monotonic() < deadline, pitr["archiving"]
        time.sleep(0.5)
    doc.extra = ""
    doc.write()


def test_status_alerts_before_pg_wal_disk_passes_the_threshold(doc: Doc) -> None:
    doc.extra = "wal_disk_alert = 1\n"  # every real disk is more than 1 % full
    doc.write()
    try:
        proc = doc.run("--json", "status")
        assert proc.returncode == 13, proc.stdout + proc.stderr
        pitr = next(s for s in json.loads(proc.stdout)["sources"] if s["source"] == "pitr")
        disk = [a for a in pitr["archiving"]["alerts"] if a["kind"] == "disk"]
        assert disk and "pg_wal's disk is" in disk[0]["message"] and "stops" in disk[0]["hint"], pitr
        assert 0 < pitr["archiving"]["wal_disk_used"] < 1
    finally:
        doc.extra = ""
        doc.write()


def test_daemon_archiving_watch_sets_metrics_and_notifies(doc: Doc, monkeypatch: pytest.MonkeyPatch) -> None:
    from posterity.config import load_config
    from posterity.operations.context import Context
    from posterity.operations.status import status
    from posterity.scheduler import background
    from posterity.scheduler.health import DaemonHealth
    from posterity.scheduler.metrics import Metrics
    from posterity.scheduler.notify import Notifier

    assert doc.cluster is not None
    doc.extra = 'archive_alert_after = "1s"\nready_alert = 1\n'
    doc.write()
    monkeypatch.setattr(background, "ARCHIVING_INTERVAL", 0.5)
    broken = doc.work / "broken"
    broken.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(doc.posterity, broken / "posterity")
    doc.set_archive_command(f"{broken / 'posterity'} wal push %p")
    events: list[tuple[str, str, str]] = []
    metrics = Metrics()
    stop = threading.Event()
    try:
        _wait_failed(doc.cluster)
        ctx = Context(load_config(str(doc.config))[0], doc.config)
        health = DaemonHealth(ctx, metrics, Notifier([], set()))
        watch = next(t for t in background.tasks(ctx, lambda *e: events.append(e), metrics, health)
                     if t.__name__ == "archiving-pitr")
        thread = threading.Thread(target=watch, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not any(e[0] == "failure" and "(failing)" in e[1] for e in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
        assert metrics.wal_ready.labels("pitr")._value.get() >= 1
        assert metrics.wal_failing.labels("pitr")._value.get() >= 1
        assert metrics.wal_alerts.labels("pitr")._value.get() >= 2
        assert 0 < metrics.wal_disk_used.labels("pitr")._value.get() < 1
        # the daemon's health (metrics, /healthz?sources) and `posterity status` agree: archiving
        now = datetime.now(UTC)
        assert health.check(now).by_source()["pitr"].state == "archiving"
        assert status(ctx, now=now).by_source()["pitr"].state == "archiving"
        assert metrics.state.labels("pitr", "archiving")._value.get() == 1
        doc.set_archive_command(doc.good_command)
        wait_archived(doc.cluster)
        deadline = time.monotonic() + 20
        while not any(e[0] == "recovery" for e in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
        assert metrics.wal_alerts.labels("pitr")._value.get() == 0
        assert sum(1 for e in events if e[0] == "failure" and "(failing)" in e[1]) == 1  # once per episode
    finally:
        stop.set()
        doc.set_archive_command(doc.good_command)
        doc.extra = ""
        doc.write()


def test_daemon_logs_the_doctor_checks_at_start(doc: Doc, caplog: pytest.LogCaptureFixture) -> None:
    from posterity.config import load_config
    from posterity.operations.context import Context
    from posterity.scheduler import background

    ctx = Context(load_config(str(doc.config))[0], doc.config)
    task = next(t for t in background.tasks(ctx) if t.__name__ == "doctor")
    doc.key.chmod(0o644)
    try:
        with caplog.at_level("INFO", logger="posterity.scheduler.background"):
            task(threading.Event())
    finally:
        doc.key.chmod(0o600)
    lines = [r.getMessage() for r in caplog.records]
    assert any("doctor: pitr: archive_command runs: ok" in m for m in lines), lines
    bad = [r for r in caplog.records if "doctor: identity: fail" in r.getMessage()]
    assert bad and bad[0].levelname == "ERROR" and "chmod 600" in bad[0].getMessage()
    assert any("failure(s)" in m for m in lines)


def test_the_readme_archive_command_archives_and_its_dry_run_stores_nothing(doc: Doc) -> None:
    """README's line (the lean `posterity-wal`) passes doctor and archives as postgres; the dry
    run (POSTERITY_ARCHIVE_PROBE) of either entry point stores nothing even for a missing file."""
    assert doc.cluster is not None
    lean = str(Path(doc.posterity).parent / "posterity-wal")
    doc.set_archive_command(f"{lean} push -c {doc.config} --source pitr %p")
    try:
        code, checks = doc.doctor("--source", "pitr")
        assert code == 0, {k: c for k, c in checks.items() if c["status"] != "ok"}
        seg = wait_archived(doc.cluster)
        assert (doc.repo / wal.payload_key("pitr", seg)).is_file()
    finally:
        doc.set_archive_command(doc.good_command)
    before = sorted(p.name for p in doc.repo.rglob("*"))
    missing = str(doc.work / "000000FF000000FF000000FE")
    env = {k: v for k, v in os.environ.items() if k != "POSTERITY_CONFIG"}
    for argv in ([doc.posterity, "-c", str(doc.config), "wal", "push", "--source", "pitr", missing],
                 [lean, "push", "-c", str(doc.config), "--source", "pitr", missing]):
        dry = subprocess.run(argv, capture_output=True, text=True, check=False, env={**env, PROBE_ENV: "1"})
        assert dry.returncode == 0, dry.stderr
        real = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        assert real.returncode != 0 and "000000FF000000FF000000FE" in real.stderr, real.stderr
    assert sorted(p.name for p in doc.repo.rglob("*")) == before
    # ... and a repository that is not there fails the dry run (exit 3) as the real push would.
    moved = doc.repo.with_name("repo-away")
    doc.repo.rename(moved)
    try:
        dry = subprocess.run([lean, "push", "-c", str(doc.config), "--source", "pitr", missing],
                             capture_output=True, text=True, check=False, env={**env, PROBE_ENV: "1"})
        assert dry.returncode == 3 and "No Posterity repository" in dry.stderr, dry.stderr
    finally:
        moved.rename(doc.repo)


def test_doctor_checks_a_streaming_source_slot(doc: Doc, tmp_path: Path) -> None:
    from posterity.config import load_config
    from posterity.operations.context import Context
    from posterity.operations.doctor import doctor

    assert doc.cluster is not None
    config = tmp_path / "stream.toml"
    config.write_text(doc.config.read_text().split("[sources.pitr]")[0]
                      + f'[sources.s]\nkind = "postgres-physical"\ndsn = "{doc.cluster.dsn(user="replicator")}"\n'
                      'wal = "stream"\nslot = "doctor_slot"\n')
    ctx = Context(load_config(str(config))[0], config)
    checks = {c.name: c for c in doctor(ctx, "s").checks}
    assert checks["replication slot"].status == "fail" and "doctor_slot" in checks["replication slot"].detail
    assert checks["max_slot_wal_keep_size"].status == "warn"  # PostgreSQL's default: unlimited
    doc.cluster.psql("select pg_create_physical_replication_slot('doctor_slot', true)")
    try:
        checks = {c.name: c for c in doctor(ctx, "s").checks}
        slot = checks["replication slot"]
        assert slot.status == "warn" and "no streamer uses it" in slot.detail, slot
    finally:
        doc.cluster.psql("select pg_drop_replication_slot('doctor_slot')")
