"""A backup process killed with SIGKILL at each stage of its life.

Points: while pg_dump waits (the dump is running), while a payload upload is in flight
(the proxy holds the PUT), right before the manifest is written, and right after it.
Each time: the repository stays consistent (only committed backups are listed, and they
read back whole), the leftovers are reported as uncommitted, and the next backup works —
taking over the dead process's lock with a message instead of failing for an hour.
"""

from __future__ import annotations

import signal
import socket
import time

import psycopg
import pytest
from tests.reliability.harness import Setup


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def pg_dump_waits(dsn: str) -> bool:
    """pg_dump (application_name posterity) is blocked taking its table locks."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where application_name = 'posterity' "
            "and wait_event_type = 'Lock' and query ilike 'lock table%'"
        ).fetchone()
    return bool(row and row[0])


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def assert_consistent_and_recovers(
    s: Setup, committed: list[str], killed_pid: int, *, uncommitted: bool
) -> None:
    assert s.backup_ids() == committed  # nothing uncommitted listed, nothing committed lost
    r = s.run("verify", "--read-data", "--json")
    assert r.code == 0, r
    assert bool(r.json()["uncommitted"]) == uncommitted, r
    # The dead process's lock is still there; the next run takes it over and says so.
    (lock,) = s.keys("locks/")
    assert lock == "locks/backup-db.json"
    r = s.run("backup", "db", "--json")
    assert r.code == 0, r
    assert (
        f"Taking over the stale lock 'backup-db' of backup on {socket.gethostname()} "
        f"(its process {killed_pid} is no longer running)" in r.err
    ), r
    assert s.backup_ids() == [*committed, r.json()["backups"][0]["id"]]
    assert s.keys("locks/") == []


def test_killed_while_pg_dump_runs(proxy_setup: Setup, module_db):
    s = proxy_setup
    first = s.backup()
    blocker = psycopg.connect(module_db.dsn)
    try:
        blocker.execute("lock table posters in access exclusive mode")  # pg_dump waits here
        proc = s.popen("backup", "db")
        wait_for(lambda: pg_dump_waits(module_db.dsn), what="pg_dump to wait for its lock")
        # With --jobs > 1 (the default: the cores) globals are stored beside the dump, not
        # before it: wait until they landed, so the kill leaves an uncommitted payload.
        wait_for(lambda: any(k.endswith("globals.sql.zst.age") and first not in k for k in s.keys("backups/")),
                 what="the globals payload")
        kill(proc)
    finally:
        blocker.rollback()
        blocker.close()
    assert_consistent_and_recovers(s, [first], proc.pid, uncommitted=True)


def test_killed_while_a_payload_upload_is_in_flight(proxy_setup: Setup, r2_proxy):
    s = proxy_setup
    r2_proxy.stall_next("PUT", ".pgdump.zst.age", seconds=15)
    proc = s.popen("backup", "db")
    wait_for(lambda: r2_proxy.find("PUT", ".pgdump.zst.age"), what="the payload upload")
    kill(proc)
    r2_proxy.clear_faults()
    assert_consistent_and_recovers(s, [], proc.pid, uncommitted=True)


@pytest.mark.parametrize("point", ["BEFORE", "AFTER"])
def test_killed_around_the_manifest(local_setup: Setup, point):
    s = local_setup
    first = s.backup()
    proc = s.popen("backup", "db", env={f"POSTERITY_TEST_PAUSE_{point}_COMMIT": "30"})
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the hook announces the pause when it is reached
    assert f"POSTERITY_TEST_PAUSE_{point}_COMMIT: pausing" in line, line
    kill(proc)
    ids = s.backup_ids()
    if point == "BEFORE":
        assert_consistent_and_recovers(s, [first], proc.pid, uncommitted=True)
    else:
        assert len(ids) == 2 and ids[0] == first  # committed the moment the manifest landed
        assert_consistent_and_recovers(s, ids, proc.pid, uncommitted=False)
