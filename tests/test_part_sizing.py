"""Every stream's part size is chosen from its estimated size before the first byte (R2's
parts must be equal; at most 10,000 of them). The part-count limit is lowered in the R2
proxy and in the client instead of sending 80 GiB."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import psycopg
import pytest
from tests.support.ops import config_text, make_context, make_keys, s3_repo_extra

import posterity.storage.base as base
from posterity.operations.backup import backup_source
from posterity.operations.restore import restore
from posterity.operations.restorers.postgres import PostgresRestoreRequest
from posterity.sources.meilisearch.sizing import export_size
from posterity.sources.postgres.sizing import cluster_size

MiB = 1024 * 1024
PARTS = 3  # the lowered part-count limit


@pytest.fixture
def random_db(pg_cluster):
    """A database of ~24 MiB that no compression shrinks."""
    name = f"rand_{uuid.uuid4().hex[:10]}"
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    dsn = pg_cluster.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE blobs(id int PRIMARY KEY, b bytea)")
        conn.execute("ALTER TABLE blobs ALTER COLUMN b SET STORAGE EXTERNAL")  # no pglz
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO blobs VALUES (%s, %s)", [(i, os.urandom(MiB)) for i in range(24)])
    try:
        yield dsn, name
    finally:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}_back" WITH (FORCE)')


def _digest(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), md5(string_agg(md5(b), '' ORDER BY id)) FROM blobs").fetchone()
    assert row is not None
    return f"{row[0]}:{row[1]}"


def test_a_stream_estimated_large_gets_equal_parts_larger_than_8_mib(
    tmp_path, random_db, pg_cluster, s3_server, s3_bucket, r2_proxy, monkeypatch
):
    dsn, name = random_db
    monkeypatch.setattr(base, "TARGET_PARTS", PARTS)
    r2_proxy.max_parts = PARTS  # 3 x 8 MiB could not hold this dump: bigger parts must be chosen
    recipient, identity = make_keys(tmp_path)
    text = config_text(f"s3://{s3_bucket}/prod", recipient, identity, tmp_path / "state", {"db": dsn}, "",
                       s3_repo_extra(s3_server, r2_proxy.endpoint))
    ctx = make_context(text)
    ctx.repo.init([recipient])
    r2_proxy.reset()

    result = backup_source(ctx, "db")
    dump = max(result.manifest.artifacts, key=lambda a: a.size)
    assert dump.size > PARTS * base.MIN_PART_SIZE * 0.6, dump.size  # really a multi-part stream

    assert r2_proxy.violations == []
    uploads = {r.params["uploadId"][0] for r in r2_proxy.upload_parts()}
    assert len(uploads) == 1  # one multipart upload: the dump
    sizes = [size for _, size in sorted(r2_proxy.parts[uploads.pop()].items())]
    assert len(sizes) >= 2 and len(sizes) <= PARTS, sizes
    assert len(set(sizes[:-1])) == 1 and sizes[0] > 8 * MiB and sizes[-1] <= sizes[0], sizes

    restore(ctx, "db", result.manifest.id, PostgresRestoreRequest(to_database=f"{name}_back"))
    assert _digest(pg_cluster.dsn(f"{name}_back")) == _digest(dsn)


def test_without_an_estimate_the_same_stream_fails_on_the_part_limit(
    tmp_path, random_db, s3_server, s3_bucket, r2_proxy, monkeypatch
):
    """The old behaviour of base backups (expected_size=None): 8 MiB parts, too many of them."""
    dsn, _ = random_db
    monkeypatch.setattr(base, "TARGET_PARTS", PARTS)
    r2_proxy.max_parts = 2
    recipient, identity = make_keys(tmp_path)
    text = config_text(f"s3://{s3_bucket}/prod", recipient, identity, tmp_path / "state", {"db": dsn}, "",
                       s3_repo_extra(s3_server, r2_proxy.endpoint))
    ctx = make_context(text)
    ctx.repo.init([recipient])
    real = base.choose_part_size
    monkeypatch.setattr("posterity.repository.repository.choose_part_size",
                        lambda expected, *a, **k: real(None if expected and expected > 2 * MiB else expected, *a, **k))
    from posterity.errors import StorageError

    with pytest.raises(StorageError):
        backup_source(ctx, "db")
    # Parts go up concurrently: whichever part past the limit reaches the proxy first (3 or a
    # later one) is refused, and the upload stops there.
    over = [int(m.group(1)) for v in r2_proxy.violations for m in [re.search(r"partNumber (\d+) outside 1\.\.2", v)] if m]
    assert over and min(over) >= 3, r2_proxy.violations
    assert not [i for i in ctx.repo.store.list("backups/") if i.key.endswith("manifest.json")]


def test_cluster_size_bounds_the_base_backup_pg_basebackup_streams(pg_cluster, random_db):
    estimate = cluster_size(pg_cluster.dsn())
    assert estimate is not None
    from posterity.pgcluster import find_bin_dir

    tool = find_bin_dir() / "pg_basebackup"
    proc = subprocess.run(
        [str(tool), "-d", pg_cluster.dsn(), "-D", "-", "-Ft", "-X", "none", "--no-manifest", "-c", "fast"],
        capture_output=True, check=False, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    assert len(proc.stdout) > 24 * MiB  # the random database is in it
    assert estimate >= len(proc.stdout), (estimate, len(proc.stdout))


def test_cluster_size_is_none_when_the_server_cannot_be_asked():
    assert cluster_size("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1") is None


def test_meilisearch_export_estimate_comes_from_the_database_size():
    assert export_size({"stats": {"databaseSize": 5 * 2**30}}) == 5 * 2**30
    assert export_size({"stats": {}}) is None and export_size({}) is None


def test_a_base_backup_artifact_carries_the_cluster_estimate(pg_cluster):
    """Was expected_size=None: 8 MiB parts, so R2 failed a base backup past 78 GiB."""
    from posterity.sources.postgres.physical import PhysicalSource
    from posterity.sources.postgres.physical_config import PhysicalConfig

    src = PhysicalSource("pitr", PhysicalConfig(kind="postgres-physical", dsn=pg_cluster.dsn()))
    version = int(pg_cluster.psql("SHOW server_version_num").strip())
    src._facts["server_version_num"] = version  # skip check(): this cluster does not archive
    art = next(iter(src.dump()))
    try:
        assert art.expected_size is not None and art.expected_size >= cluster_size(pg_cluster.dsn()) - MiB
    finally:
        art.abort()
