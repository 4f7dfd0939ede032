"""Restore results are dataclasses with fields (issue 15, item 3) whose ``to_dict()`` is, key for
key and in the same order, the dict each kind's restore code returns, i.e. what ``posterity
restore --json`` printed before the results were typed.

The dicts below are built the way the sources build them (``sources/postgres/restore.py``,
``files/restore.py``, ``meilisearch/restore.py`` and ``restore_file.py``,
``postgres/pitr_restore.py`` with ``pitr_start.py``); a real files restore checks the files one.
"""

from __future__ import annotations

import json

import pytest

from posterity.operations.restore_results import (
    FilesRestoreResult,
    MeilisearchCountsResult,
    MeilisearchFileResult,
    MeilisearchIndexesResult,
    PitrRestoreResult,
    PointRestoreResult,
    PostgresRestoreResult,
)

POSTGRES = {"backup": "b1", "database": "app", "server": "postgresql://localhost:5432/app", "created": True,
            "bytes": 1234, "jobs": 4}
POSTGRES_SPLIT = {**POSTGRES, "archives": 3, "staged": 99}
POSTGRES_END = {"notes": ["n"], "seconds": 1.5, "warnings": ["w"]}
PLAN = {"backup": "b2", "recovery_timeline": 1, "wal_first": "000000010000000000000002",
        "wal_last": "000000010000000000000003", "wal_segments": 2, "newest_archived": "000000010000000000000003",
        "wal_tail": None}
PITR = {**PLAN, "source": "pg", "target": "end of WAL", "directory": "/d", "owner": "postgres", "tar_members": 9,
        "wal_bytes": 100, "base_bytes": 200, "settings": {"restore_command": "x"}, "started": False}
STARTED = {"started": True, "port": 5544, "socket_dir": "/d", "log": "/d/posterity-restore.log", "state": "paused"}

CASES = [
    (PostgresRestoreResult, {**POSTGRES, **POSTGRES_END}),
    (PostgresRestoreResult, {**POSTGRES, "bytes": None, **POSTGRES_END}),
    (PostgresRestoreResult, {**POSTGRES_SPLIT, "kept": "app_old", "roles": {"created": ["r"], "skipped": []},
                             "row_counts": {"tables": 2, "rows": 5, "matched": 2}, **POSTGRES_END}),
    (FilesRestoreResult, {"backup": "b3", "source": "config", "unchanged_from": None, "target": "/t", "paths": [],
                          "restored": 3, "files": 2, "dirs": 1, "symlinks": 0, "bytes": 10, "overwritten": 0,
                          "owners": True, "seconds": 0.1}),
    (MeilisearchIndexesResult, {"backup": "b4", "from": "export", "swap_task": 7,
                                "indexes": [{"index": "posters", "target": "posters", "documents": 3,
                                             "primary_key": "id", "created": False}], "warnings": []}),
    (MeilisearchFileResult, {"backup": "b5", "what": "dump", "path": "/x.dump", "bytes": 5,
                             "meilisearch_version": "1.11.3", "live_version": None, "expected_counts": {"p": 3},
                             "counts_exact": True, "steps": ["a", "b"], "warnings": []}),
    (MeilisearchFileResult, {"backup": "b5", "what": "snapshot", "path": "/x.snapshot", "bytes": 5,
                             "meilisearch_version": "1.11.3", "live_version": "1.11.3", "expected_counts": {},
                             "counts_exact": False, "steps": [], "warnings": ["w"],
                             "restart": {"command": "systemctl restart meilisearch", "health": "available"}}),
    (MeilisearchCountsResult, {"backup": "b6", "counts_exact": True, "indexes": [{"index": "p", "expected": 3,
                               "live": 2}], "mismatches": [{"index": "p", "expected": 3, "live": 2}], "extra": []}),
    (PitrRestoreResult, {**PITR, "seconds": 2.0, "notes": []}),
    (PitrRestoreResult, {**PITR, **STARTED, "stopped": "recovery stopping before commit", "new_timeline": 2,
                         "in_recovery": True, "replay_lsn": None, "replay_time": None, "timeline": 1,
                         "seconds": 2.0, "notes": ["n"]}),
    (PitrRestoreResult, {**PITR, **STARTED, "last_transaction": "2026-01-01", "query_error": "psql did not answer",
                         "seconds": 2.0, "notes": []}),
    (PitrRestoreResult, {**PITR, **STARTED, "seconds": 2.0, "notes": []}),  # psql answered nothing it could parse
]


@pytest.mark.parametrize(("cls", "data"), CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)])
def test_a_result_prints_exactly_the_json_its_kind_reported(cls, data):
    result = cls.from_dict(data)
    assert result.to_dict() == data
    assert json.dumps(result.to_dict(), indent=2) == json.dumps(data, indent=2)  # same keys, same order


def test_the_fields_say_what_the_keys_said():
    pg = PostgresRestoreResult.from_dict(CASES[2][1])
    assert (pg.database, pg.jobs, pg.kept, pg.row_counts["rows"], pg.archives) == ("app", 4, "app_old", 5, 3)
    assert PostgresRestoreResult.from_dict(CASES[0][1]).row_counts is None
    meili = MeilisearchIndexesResult.from_dict(CASES[4][1])
    assert (meili.origin, meili.swap_task, meili.indexes[0]["documents"]) == ("export", 7, 3)
    pitr = PitrRestoreResult.from_dict(CASES[9][1])
    assert (pitr.started, pitr.port, pitr.state, pitr.fact("timeline"), pitr.fact("replay_lsn")) == (
        True, 5544, "paused", 1, None)
    assert PitrRestoreResult.from_dict(CASES[8][1]).fact("timeline") is None


def test_a_fact_the_result_type_does_not_know_is_refused_not_dropped():
    with pytest.raises(TypeError, match="no field for surprise"):
        PostgresRestoreResult.from_dict({**CASES[0][1], "surprise": 1})
    with pytest.raises(TypeError, match="not all four"):
        PitrRestoreResult.from_dict({**PITR, **STARTED, "replay_lsn": "0/1", "seconds": 1.0, "notes": []})


def test_a_point_result_prints_each_member_as_its_kind():
    files = FilesRestoreResult.from_dict(CASES[3][1])
    pg = PostgresRestoreResult.from_dict(CASES[0][1])
    point = PointRestoreResult("p1", {"db": pg, "config": files}, ["db", "config"])
    assert point.to_dict() == {"point": "p1", "restored": {"db": CASES[0][1], "config": CASES[3][1]},
                               "order": ["db", "config"]}


def test_a_real_files_restore_prints_the_sources_keys_in_the_sources_order(tmp_path):
    from tests.support.ops import config_text, make_context, make_keys

    from posterity.operations.backup import backup_source
    from posterity.operations.restore import restore
    from posterity.operations.restorers.files import FilesRestoreRequest

    live = tmp_path / "live"
    live.mkdir()
    (live / "a.txt").write_text("alpha\n")
    recipient, identity = make_keys(tmp_path)
    extra = f'[sources.config]\nkind = "files"\npaths = ["{live}"]\n'
    ctx = make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state", {}, extra))
    from posterity.operations.init import init_repository

    init_repository(ctx)
    backup_source(ctx, "config")
    result = restore(ctx, "config", "latest", FilesRestoreRequest(to=tmp_path / "out"))
    assert isinstance(result, FilesRestoreResult)
    assert list(result.to_dict()) == list(CASES[3][1])
    assert result.files == 1 and (tmp_path / "out" / str(live).lstrip("/") / "a.txt").read_text() == "alpha\n"
