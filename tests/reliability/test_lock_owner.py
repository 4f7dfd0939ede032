"""Locks left by owners that are provably gone, though their pid says "alive".

A backup run as pid 1 of its own pid namespace (a container, ``unshare --pid``) and killed
leaves a lock ``{pid: 1}``; pid 1 on the host always runs, so a check by pid alone waited
for ``lock_ttl`` (an hour). The lock now records the kernel's boot id, the owner's pid
namespace and its start time: the next backup takes the lock over, saying why, while a
live owner is still respected.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.reliability.harness import CLI, Setup

from posterity.repository.owner import identity


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare as root")
def test_killed_backup_that_ran_as_pid_1_in_its_namespace_is_taken_over(local_setup: Setup):
    import subprocess

    s = local_setup
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTERITY_"))}
    env.update(POSTERITY_CONFIG=str(s.config), POSTERITY_TEST_PAUSE_BEFORE_COMMIT="60")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", *CLI, "backup", "db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "POSTERITY_TEST_PAUSE_BEFORE_COMMIT: pausing" in line, line
        held = json.loads(s.context().repo.store.get_bytes("locks/backup-db.json"))
        assert held["pid"] == 1 and held["host"] == socket.gethostname(), held
        (inner,) = _children(proc.pid)
        os.kill(inner, signal.SIGKILL)  # pid 1 of the namespace: the namespace dies with it
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = s.run("backup", "db", "--json")
    assert r.code == 0, r  # was: exit 8 "held by backup on HOST (pid 1)" for lock_ttl
    assert (
        f"Taking over the stale lock 'backup-db' of backup on {socket.gethostname()} "
        "(its process 1 ran in a pid namespace (container) that no longer exists)" in r.err
    ), r
    assert s.backup_ids() == [r.json()["backups"][0]["id"]]
    assert s.keys("locks/") == []


def _plant(s: Setup, **owner) -> None:
    now = datetime.now(UTC)
    body = {
        "name": "backup-db",
        "operation": "backup",
        "created": (now - timedelta(minutes=5)).isoformat(),
        "expires": (now + timedelta(hours=1)).isoformat(),
        **owner,
    }
    store = s.context().repo.store
    store.delete(["locks/backup-db.json"])
    store.put("locks/backup-db.json", json.dumps(body).encode())


def test_lock_of_a_reused_pid_is_taken_over_and_a_live_owner_respected(local_setup: Setup):
    s = local_setup
    me = identity()  # this test process: alive for the whole test
    assert {"boot_id", "pid_ns", "start_ticks"} <= me.keys(), me
    _plant(s, **me)
    r = s.run("backup", "db")
    assert r.code == 8 and f"(pid {me['pid']})" in r.err, r  # the live owner is respected
    _plant(s, **{**me, "start_ticks": me["start_ticks"] - 1})  # same pid, another process
    r = s.run("backup", "db")
    assert r.code == 0, r
    assert f"its process {me['pid']} is no longer running (the pid now belongs to another process)" in r.err, r
    assert s.keys("locks/") == []


def test_lock_from_before_a_reboot_is_taken_over(local_setup: Setup):
    s = local_setup
    me = identity()
    _plant(s, **{**me, "boot_id": "00000000-0000-0000-0000-000000000000", "pid": 1})
    r = s.run("backup", "db")
    assert r.code == 0, r
    assert "this machine has rebooted since" in r.err, r
    # On another machine nothing can be proven: the lock is respected.
    _plant(s, **{**me, "host": "elsewhere", "boot_id": "0", "pid": 1})
    r = s.run("backup", "db")
    assert r.code == 8 and "held by backup on elsewhere (pid 1)" in r.err, r
