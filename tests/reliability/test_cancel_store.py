"""SIGTERM while the object store holds a request: a stalled backup upload, a restore download.

The upload runs inside obstore (Rust) on the main thread, and Python runs a signal handler
only when that call returns: the backup stops cleanly once the stalled request ends —
here when the proxy lets it go after 8 s, in production within the store's request timeout.
Measured: 8.5 s after SIGTERM with an 8 s stall; 20.1 s with a 20 s stall.
"""

from __future__ import annotations

import signal
import time

from tests.reliability.harness import Setup
from tests.reliability.test_cancel import _assert_clean
from tests.reliability.test_kill import wait_for

STALL = 8


def test_sigterm_during_a_stalled_upload_stops_cleanly_when_the_request_returns(proxy_setup: Setup, r2_proxy):
    s = proxy_setup
    r2_proxy.stall_next("PUT", ".pgdump.zst.age", seconds=STALL)
    proc = s.popen("backup", "db")
    wait_for(lambda: r2_proxy.find("PUT", ".pgdump.zst.age"), what="the payload upload")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    r2_proxy.clear_faults()
    print(f"stopped {elapsed:.1f}s after SIGTERM")
    assert proc.returncode == -signal.SIGTERM, err
    assert "error: Stopped by SIGTERM; the lock was released and nothing uncommitted was kept." in err, err
    _assert_clean(s, [])
    assert elapsed < STALL + 10, elapsed


def test_sigterm_during_a_restore_drops_the_partly_restored_database(proxy_setup: Setup, r2_proxy, module_db):
    import psycopg
    from tests.reliability.harness import unique

    s = proxy_setup
    s.backup()
    target = unique("sigterm")
    r2_proxy.stall_next("GET", ".pgdump.zst.age", seconds=3)
    proc = s.popen("restore", "db", "latest", "--to-database", target)
    wait_for(lambda: r2_proxy.find("GET", ".pgdump.zst.age"), what="the payload download")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    r2_proxy.clear_faults()
    assert proc.returncode == -signal.SIGTERM, err
    assert "error: Stopped by SIGTERM" in err, err
    with psycopg.connect(module_db.dsn, autocommit=True) as conn:
        row = conn.execute("select count(*) from pg_database where datname = %s", (target,)).fetchone()
    assert row == (0,), f"{target} was left behind"
    assert s.keys("locks/") == []
