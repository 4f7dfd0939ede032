"""The overview's WAL line for a point-in-time source: the recovery point (age of the newest
stored WAL) and the archiving backlog, from a real archiving cluster."""

from __future__ import annotations

import json

from tests.support.pitr import archiving_env, insert_row, wait_archived

from posterity.config import load_config
from posterity.operations.context import Context
from posterity.pgcluster import TempCluster
from posterity.web.data import Dashboard


def test_overview_shows_the_wal_recovery_point_and_backlog(archiving_cluster: TempCluster):
    with archiving_env("posterity-webwal-", archiving_cluster) as e:
        cluster = e.cluster
        assert cluster is not None
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
