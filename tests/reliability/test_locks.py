"""Two backups of one source at once, and locks left by owners that are gone.

The second of two concurrent backups is refused with LockHeld (exit 8), naming the holder;
the first completes and is the only backup listed. A lock whose owner host stopped
refreshing it is taken over once it has expired, with a message; one that has not expired
is respected until `posterity unlock`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from tests.reliability.harness import Setup


def test_second_concurrent_backup_gets_lock_held(local_setup: Setup):
    s = local_setup
    first = s.popen("backup", "db", "--json", env={"POSTERITY_TEST_PAUSE_BEFORE_COMMIT": "3"})
    assert first.stderr is not None
    assert "POSTERITY_TEST_PAUSE_BEFORE_COMMIT: pausing" in first.stderr.readline()
    r = s.run("backup", "db")
    assert r.code == 8, r
    assert (
        f"error: The lock 'backup-db' is held by backup on {os.uname().nodename} (pid {first.pid})"
        in r.err
    ), r
    assert "posterity unlock backup-db" in r.err, r
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    (winner,) = json.loads(out)["backups"]
    assert s.backup_ids() == [winner["id"]]  # the refused run left nothing behind
    assert [k for k in s.keys("backups/") if winner["id"] not in k] == []
    assert s.keys("locks/") == []
    s.backup()  # and the next run works


def _plant_lock(s: Setup, *, expired: bool) -> None:
    now = datetime.now(UTC)
    created = now - timedelta(hours=2)
    expires = now + (timedelta(minutes=-1) if expired else timedelta(hours=1))
    body = {
        "name": "backup-db",
        "operation": "backup",
        "host": "old-backup-host",
        "pid": 4242,
        "created": created.isoformat(),
        "expires": expires.isoformat(),
    }
    s.context().repo.store.put("locks/backup-db.json", json.dumps(body).encode())


def test_expired_lock_of_a_dead_host_is_taken_over_with_a_message(local_setup: Setup):
    s = local_setup
    _plant_lock(s, expired=True)
    r = s.run("backup", "db", "--json")
    assert r.code == 0, r
    assert (
        "Taking over the expired lock 'backup-db' of backup on old-backup-host (expired " in r.err
    ), r
    assert s.backup_ids() == [r.json()["backups"][0]["id"]]
    assert s.keys("locks/") == []


def test_live_lock_of_another_host_is_respected_until_unlocked(local_setup: Setup):
    s = local_setup
    _plant_lock(s, expired=False)
    r = s.run("backup", "db")
    assert r.code == 8, r
    assert (
        "held by backup on old-backup-host (pid 4242)" in r.err
        and "it expires by itself at" in r.err
    ), r
    assert s.backup_ids() == []
    r = s.run("unlock", "backup-db")
    assert r.code == 0 and "removed lock backup-db" in r.out, r
    s.backup()
    assert len(s.backup_ids()) == 1
