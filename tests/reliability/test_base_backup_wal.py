"""A base backup commits only when its WAL is in THIS repository, and never waits unbounded.

Found (issue 11.2): with ``archive_command = '/bin/true'`` `backup pitr` exited 0 — the
wait trusted ``pg_stat_archiver`` — and `wal status` said "lag 0" with no gap. With a
failing archive_command (issue 14) pg_basebackup waited on the server for ever ("still
waiting for all required WAL segments to be archived"). And a wrapper script as
archive_command drew a warning because its text lacks the word "posterity".

One cluster (archive_mode = on, a REPLICATION role) for the module; each test sets its
archive_command with ALTER SYSTEM and a reload.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.support.pitr import Env, archiving_env, wait_archived

ARCHIVE_WAIT = 5
MARGIN = 20  # the base backup itself, process start-up, polling


@pytest.fixture(scope="module")
def arch():
    # A private cluster: the tests break its archive_command on purpose.
    with archiving_env("bbwal-", archive_command="/bin/true", pitr_extra=f"archive_wait = {ARCHIVE_WAIT}\n",
                       table="t(id int primary key)") as e:
        yield e


def set_archive_command(e: Env, command: str) -> None:
    assert e.cluster is not None
    e.cluster.psql(f"alter system set archive_command = '{command}'")
    e.cluster.psql("select pg_reload_conf()")
    if command != "/bin/false":
        time.sleep(0.5)
        return
    # The archiver reloads when it next wakes: wait until it has failed on a fresh segment, or a
    # backup started now may still find its WAL archived by the previous command.
    e.cluster.psql("select pg_logical_emit_message(false, 'posterity-tests', 'switch')")
    seg = e.cluster.psql("select pg_walfile_name(pg_switch_wal())").strip()
    deadline = time.monotonic() + 30
    while e.cluster.psql("select coalesce(last_failed_wal, '') from pg_stat_archiver").strip()[:24] < seg:
        assert time.monotonic() < deadline, f"archive_command = '{command}' did not take effect in 30 s"
        time.sleep(0.05)


def nothing_committed(e: Env) -> None:
    listed = json.loads(e.ok("--json", "list").stdout)
    assert [b for b in listed if b["source"] == "pitr"] == [], listed
    assert not list((e.repo / "backups").glob("pitr/*/*")), "a payload of the failed backup is left"
    assert not list((e.repo / "locks").glob("*")), "the lock is left"


def no_basebackup_on_server(e: Env) -> None:
    assert e.cluster is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        n = e.cluster.psql(
            "select count(*) from pg_stat_activity where application_name like 'posterity-basebackup-%'"
        ).strip()
        if n == "0":
            return
        time.sleep(0.2)
    raise AssertionError("the server still runs the base backup's walsender")


def test_server_counts_wal_archived_but_the_repository_lacks_it(arch: Env):
    e = arch
    set_archive_command(e, "/bin/true")
    assert e.cluster is not None
    e.cluster.psql("insert into t values (1)")
    wait_archived(e.cluster)  # "archived" by /bin/true: nothing reaches the repository
    t0 = time.monotonic()
    r = e.run("backup", "pitr", timeout=ARCHIVE_WAIT + MARGIN + 30)
    took = time.monotonic() - t0
    assert r.returncode == 5, (r.returncode, r.stderr)  # was: 0, a committed unrestorable backup
    assert "which did not reach this repository" in r.stderr, r.stderr
    assert "the server counts it archived" in r.stderr, r.stderr
    assert "archive_command = 'posterity wal push --source pitr %p'" in r.stderr, r.stderr  # hint
    assert "does not push here" in r.stderr, r.stderr  # the behaviour check warned up front
    assert took < ARCHIVE_WAIT + MARGIN, took
    nothing_committed(e)

    st = e.run("--json", "wal", "status", "--source", "pitr")
    assert st.returncode != 0, st.stdout  # a gap: exit 1
    status = json.loads(st.stdout)
    assert status["server"]["lag_segments"] is None, status["server"]  # was: 0
    (gap,) = status["gaps"]
    assert gap["trailing"] and gap["last"] == status["server"]["last_archived_wal"][:24], status
    human = e.run("wal", "status", "--source", "pitr").stdout
    assert "lag ? segment(s)" in human and "does not store into this repository" in human, human


def test_failing_archive_command_fails_the_base_backup_in_bounded_time(arch: Env):
    e = arch
    set_archive_command(e, "/bin/false")
    t0 = time.monotonic()
    try:
        r = e.run("backup", "pitr", timeout=ARCHIVE_WAIT + MARGIN + 60)
    except subprocess.TimeoutExpired:  # was: pg_basebackup waited on the server for ever
        pytest.fail("the base backup did not end although archiving fails")
    took = time.monotonic() - t0
    assert r.returncode == 5, (r.returncode, r.stderr)
    assert f"The server waited {ARCHIVE_WAIT}s for the WAL this base backup needs to be archived" in r.stderr, r.stderr
    assert "archive_command failure(s) during the backup" in r.stderr, r.stderr
    assert "hint: Nothing was committed. WAL archiving must store" in r.stderr, r.stderr
    assert took < ARCHIVE_WAIT + MARGIN, took
    nothing_committed(e)
    no_basebackup_on_server(e)


def test_wrapper_script_archive_command_is_recognised_by_what_it_does(arch: Env):
    e = arch
    script = e.work / "archive-wal.sh"  # its text and path do not say "posterity"
    script.write_text(f'#!/bin/sh\nexec {e.command} -c {e.config} wal push --source pitr "$1"\n')
    script.chmod(0o755)
    set_archive_command(e, f"{script} %p")
    assert e.cluster is not None
    wait_archived(e.cluster)  # the backlog /bin/false left, then one more segment
    r = e.run("--json", "backup", "pitr", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "does not run posterity" not in r.stderr and "does not push here" not in r.stderr, r.stderr
    base = json.loads(r.stdout)["backups"][0]
    facts = json.loads(e.ok("--json", "show", base["id"]).stdout)["facts"]
    assert (e.repo / "wal" / "pitr").is_dir()
    for seg in {facts["wal_start_segment"], facts["wal_stop_segment"]}:
        assert (e.repo / "wal" / "pitr" / seg[:8] / f"{seg}.zst.age").is_file(), seg
    status = json.loads(e.run("--json", "wal", "status", "--source", "pitr").stdout)
    assert status["server"]["lag_segments"] is not None and not any(g.get("trailing") for g in status["gaps"]), status


def _version_probe(pid: int) -> bool:
    """``pg_basebackup --version`` (the tool check before the backup) exits at once: not the one to stop."""
    try:
        return b"--version" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # already gone


def test_backup_timeout_ends_a_stopped_pg_basebackup(arch: Env):
    """`[general] backup_timeout` ends a base backup whose pg_basebackup is stopped (SIGSTOP):
    the cancel kills it (it would otherwise hold the reading thread for ever). Archiving fails
    so that pg_basebackup lives long enough to be stopped; the deadline (8 s, room for a slow start on a loaded machine) comes long before
    archive_wait (60 s here)."""
    e = arch
    set_archive_command(e, "/bin/false")
    original = e.config.read_text()
    e.config.write_text(original.replace("[general]\n", '[general]\nbackup_timeout = "8s"\n')
                        .replace(f"archive_wait = {ARCHIVE_WAIT}\n", "archive_wait = 60\n"))
    before = sorted(str(p) for p in (e.repo / "backups").glob("pitr/*/*"))
    env = {k: v for k, v in os.environ.items() if k not in ("POSTERITY_CONFIG", "POSTERITY_EXECUTABLE")}
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen([str(e.posterity), "-c", str(e.config), "backup", "pitr"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        base = None
        while base is None and time.monotonic() - t0 < 30:
            found = subprocess.run(["pgrep", "-P", str(proc.pid), "-x", "pg_basebackup"],
                                   capture_output=True, text=True).stdout.split()
            base = next((int(pid) for pid in found if not _version_probe(int(pid))), None)
            time.sleep(0.05)
        assert base is not None, "pg_basebackup never started"
        os.kill(base, signal.SIGSTOP)
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        e.config.write_text(original)
    assert proc.returncode == 14, (proc.returncode, err)
    assert "ran longer than its backup_timeout (8s) and was stopped; nothing was committed." in err, err
    assert took < 8 + MARGIN, took
    assert not Path(f"/proc/{base}").exists() or Path(f"/proc/{base}/stat").read_text().split()[2] == "Z"
    # nothing new: the backups folder holds just what it held (no payload, no manifest), no lock
    assert sorted(str(p) for p in (e.repo / "backups").glob("pitr/*/*")) == before
    assert not list((e.repo / "locks").glob("*")), "the lock is left"
    no_basebackup_on_server(e)
