"""A backup that is told to stop (SIGTERM) or outlives its deadline ends cleanly.

systemd stops a timer's service with SIGTERM; `[general] backup_timeout` ends a dump that
is stopped (SIGSTOP) or blocked. Each time: a documented exit code and message, the lock
released, no payload left, nothing listed, a failure in the audit log, no pg_dump left
running, and the next backup works.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
from tests.reliability.harness import Setup
from tests.reliability.test_kill import pg_dump_waits, wait_for


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _assert_clean(s: Setup, committed: list[str]) -> None:
    assert s.backup_ids() == committed
    assert [k for k in s.keys("backups/") if not any(c in k for c in committed)] == []
    assert s.keys("locks/") == []
    records = [json.loads(line) for line in (s.root / "state" / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["operation"] == "backup" and records[-1]["result"] == "failed", records[-1]


def test_sigterm_during_a_backup_releases_the_lock_and_removes_payloads(local_setup: Setup):
    s = local_setup
    first = s.backup()
    proc = s.popen("backup", "db", env={"POSTERITY_TEST_PAUSE_BEFORE_COMMIT": "30"})
    assert proc.stderr is not None
    assert "POSTERITY_TEST_PAUSE_BEFORE_COMMIT: pausing" in proc.stderr.readline()
    assert [k for k in s.keys("backups/") if first not in k], "the payload should be stored by now"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == -signal.SIGTERM, err  # shells: 143
    assert "error: Stopped by SIGTERM; the lock was released and nothing uncommitted was kept." in err, err
    assert "Traceback" not in err
    _assert_clean(s, [first])
    s.backup()
    assert len(s.backup_ids()) == 2


def test_sigterm_while_pg_dump_is_stopped_ends_it(local_setup: Setup, module_db):
    """pg_dump blocked on a lock and SIGSTOPped: SIGTERM still ends the backup at once."""
    s = local_setup
    blocker = psycopg.connect(module_db.dsn)
    try:
        blocker.execute("lock table posters in access exclusive mode")
        proc = s.popen("backup", "db")
        wait_for(lambda: pg_dump_waits(module_db.dsn), what="pg_dump to wait for its lock")
        (dump,) = [p for p in _children(proc.pid) if _comm(p) == "pg_dump"]
        os.kill(dump, signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
    assert proc.returncode == -signal.SIGTERM, err  # shells: 143
    assert not Path(f"/proc/{dump}").exists() or _comm(dump) == "", "pg_dump was left running"
    _assert_clean(s, [])


def test_backup_timeout_ends_a_stopped_dump(local_setup: Setup, module_db):
    s = local_setup
    s.source_extra = ""
    text = s.config.read_text().replace("[general]\n", '[general]\nbackup_timeout = "3s"\n')
    s.config.write_text(text)
    blocker = psycopg.connect(module_db.dsn)
    try:
        blocker.execute("lock table posters in access exclusive mode")
        t0 = time.monotonic()
        proc = s.popen("backup", "db")
        wait_for(lambda: pg_dump_waits(module_db.dsn), what="pg_dump to wait for its lock")
        (dump,) = [p for p in _children(proc.pid) if _comm(p) == "pg_dump"]
        os.kill(dump, signal.SIGSTOP)  # stuck for good: no lock release would help it now
        _out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        blocker.rollback()
        blocker.close()
    assert proc.returncode == 14, err
    assert "The backup of db ran longer than its backup_timeout (3s) and was stopped; nothing was committed." in err
    assert "backup_timeout" in err.split("hint:")[1]
    assert elapsed < 15, elapsed
    assert not Path(f"/proc/{dump}").exists() or _comm(dump) == ""
    _assert_clean(s, [])
