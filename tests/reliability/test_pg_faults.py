"""PostgreSQL failing under a running backup: pg_dump hits a lock timeout, its backend is
terminated, the server restarts. Each time the backup fails with pg_dump's own words,
commits nothing, leaves no payload and no lock behind, and the next backup works.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from tests.reliability.harness import Setup
from tests.reliability.test_kill import pg_dump_waits, wait_for


def assert_clean_failure(s: Setup, r, before: list[str], *phrases: str) -> None:
    assert r.code == 5, r
    assert "error: pg_dump of " in r.err and "failed (exit 1)" in r.err, r
    for phrase in phrases:
        assert phrase in r.err, r
    assert "hint: Nothing was committed; earlier backups are intact." in r.err, r
    assert s.backup_ids() == before
    assert [k for k in s.keys("backups/") if k.split("/")[2] not in before] == []  # no orphans
    assert s.keys("locks/") == []


def test_pg_dump_lock_timeout(local_setup: Setup, module_db):
    """A migration holds a table: pg_dump gives up after lock_wait_timeout. (pg_dump sets
    lock_timeout = 0 on its own session, so PGOPTIONS or ALTER ROLE cannot bound the wait;
    before the option existed, this backup waited forever.)"""
    s = local_setup
    first = s.backup()
    s.source_extra = 'lock_wait_timeout = "300ms"'
    s.write_config()
    with psycopg.connect(module_db.dsn) as blocker:
        blocker.execute("lock table poster_authors in access exclusive mode")
        r = s.run("backup", "db", timeout=60)
        blocker.rollback()
    assert_clean_failure(
        s,
        r,
        [first],
        "canceling statement due to statement timeout",
        "LOCK TABLE public.poster_authors IN ACCESS SHARE MODE",
    )
    assert "Could not count rows" not in r.err  # the counts were cancelled on purpose, quietly
    s.backup()


@pytest.mark.parametrize("how", ["terminate", "restart"])
def test_pg_dump_loses_its_server(local_setup: Setup, module_db, how):
    s = local_setup
    blocker = psycopg.connect(module_db.dsn)
    try:
        blocker.execute("lock table posters in access exclusive mode")
        proc = s.popen("backup", "db")
        wait_for(lambda: pg_dump_waits(module_db.dsn), what="pg_dump to wait for its lock")
        if how == "terminate":
            with psycopg.connect(module_db.dsn, autocommit=True) as admin:
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where application_name = 'posterity' and query ilike 'lock table%'"
                )
        else:
            module_db.cluster.restart()  # fast shutdown: every session is cut
        out, err = proc.communicate(timeout=60)
    finally:
        try:
            blocker.rollback()
            blocker.close()
        except psycopg.Error:
            pass  # its session died with the restart
    from tests.reliability.harness import Run

    r = Run(["backup", "db"], proc.returncode, out, err)
    words = (
        "terminating connection due to administrator command"
        if how == "terminate"
        else "server closed the connection"
    )
    assert_clean_failure(s, r, [], words)
    assert "Traceback" not in r.err and "Exception ignored" not in r.err, r
    time.sleep(0.1)
    s.backup()
