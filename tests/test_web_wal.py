"""The overview's WAL line for a point-in-time source: the recovery point (age of the newest
stored WAL) and the archiving backlog, from a real archiving cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.pitr import AS_ROOT, Env, chown_owner, insert_row, wait_archived

from posterity.config import load_config
from posterity.operations.context import Context
from posterity.pgcluster import TempCluster
from posterity.web.data import Dashboard


def test_overview_shows_the_wal_recovery_point_and_backlog():
    work = Path(tempfile.mkdtemp(prefix="posterity-webwal-"))
    work.chmod(0o755)
    e = Env(work)
    cluster = TempCluster(conf={"archive_mode": "on",
                                "archive_command": f"{e.command} -c {e.config} wal push --source pitr %p"})
    try:
        e.cluster = cluster
        e.write_config(cluster.dsn(user="replicator"))
        chown_owner(e.config, e.key)
        e.ok("init")
        (e.repo / "wal").mkdir()
        if AS_ROOT:
            subprocess.run(["chown", "-R", "postgres:postgres", str(e.repo)], check=True)
        cluster.start()
        cluster.psql("create role replicator with login replication")
        cluster.psql("create table t(id int primary key, at timestamptz not null default clock_timestamp())")
        insert_row(cluster, 1)
        wait_archived(cluster)
        json.loads(e.ok("--json", "backup", "pitr").stdout)
        insert_row(cluster, 2)
        newest = wait_archived(cluster)

        config, path = load_config(str(e.config))
        board = Dashboard(Context(config, path), cache_seconds=0)
        line = board.overview()["wal"]["pitr"]
        assert line["newest"] == newest[:24] or newest.startswith(line["newest"])
        assert line["rpo_seconds"] is not None and 0 <= line["rpo_seconds"] < 120
        assert line["backlog"] == 0 and line["gaps"] == 0 and line["server_reachable"] is True
        assert line["failing"] is False
        # "other" points at the same server but holds no WAL: no recovery point to claim.
        assert board.overview()["wal"]["other"]["rpo_seconds"] is None
    finally:
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)
