"""Quick tests proving the shared fixtures: PostgreSQL, sample data, SeaweedFS, R2 proxy."""

from __future__ import annotations

import random
from datetime import timedelta

import obstore
import psycopg
import pytest
from tests.support.r2proxy import MIN_PART_SIZE, R2Proxy
from tests.support.seaweed import SeaweedS3

from posterity.demo import fingerprint, load_sample, table_row_counts
from posterity.pgcluster import TempCluster

MiB = 1024 * 1024

# ------------------------------------------------------------------------------ PostgreSQL


def test_cluster_runs_sql(pg_cluster: TempCluster) -> None:
    assert pg_cluster.running
    assert pg_cluster.psql("SELECT 1 + 1") == "2\n"
    assert pg_cluster.psql("SHOW server_encoding; SHOW wal_level") == "UTF8\nreplica\n"
    assert pg_cluster.dsn("db") == f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/db"
    with psycopg.connect(pg_cluster.dsn()) as conn:
        row = conn.execute("SELECT current_user, inet_server_port()").fetchone()
    assert row == ("postgres", pg_cluster.port)
    owner = pg_cluster.run_as_owner(["id", "-un"])
    assert owner.returncode == 0 and owner.stdout.strip() == pg_cluster.owner
    assert (pg_cluster.data_dir / "PG_VERSION").exists()


def test_cluster_psql_error_is_raised(pg_cluster: TempCluster) -> None:
    from posterity.pgcluster import ClusterError

    with pytest.raises(ClusterError, match="no_such_table"):
        pg_cluster.psql("SELECT * FROM no_such_table")


# ------------------------------------------------------------------------------ sample data


def test_sample_data_counts_and_fingerprint(sample_db, pg_cluster: TempCluster) -> None:
    counts = table_row_counts(sample_db)
    assert counts["public.posters"] == 300
    assert counts["public.institutions"] == 30
    assert counts["public.authors"] == 150
    assert counts["public.poster_authors"] >= 300
    assert counts["audit.load_log"] == 1

    fp = fingerprint(sample_db)
    assert fingerprint(sample_db) == fp  # stable
    for table, count in counts.items():
        assert fp[table][0] == count
    assert fp["sequence:public.poster_number_seq"] == (100300, "called")
    assert fp["catalog:indexes"][0] >= 6

    # Same seed in another database -> identical fingerprint (deterministic data).
    other = f"{sample_db.name}_twin"
    pg_cluster.psql(f'CREATE DATABASE "{other}"')
    try:
        load_sample(pg_cluster.dsn(other), posters=300)
        assert fingerprint(pg_cluster.dsn(other)) == fp
    finally:
        pg_cluster.psql(f'DROP DATABASE "{other}" WITH (FORCE)')

    # Some realism checks: unicode, NULLs, bytea, nested jsonb, NULL array elements.
    with psycopg.connect(sample_db) as conn:
        stats = conn.execute(
            """
            SELECT count(*) FILTER (WHERE title ~ '[^\\x01-\\x7e]'),
                   count(*) FILTER (WHERE abstract IS NULL),
                   count(*) FILTER (WHERE thumbnail IS NOT NULL
                                    AND octet_length(thumbnail) BETWEEN 200 AND 900),
                   count(*) FILTER (WHERE metadata #> '{session,room}' IS NOT NULL),
                   max(length(abstract))
            FROM posters
            """
        ).fetchone()
    assert stats is not None
    unicode_titles, null_abstracts, thumbs, nested, longest = stats
    assert unicode_titles > 0 and null_abstracts > 0 and thumbs > 100 and nested > 100
    assert longest > 10_000

    # A one-character change in one row changes exactly that table's digest.
    pg_cluster.psql("UPDATE posters SET title = title || '.' WHERE id = 7", sample_db.name)
    changed = fingerprint(sample_db)
    assert [k for k in fp if fp[k] != changed[k]] == ["public.posters"]
    assert changed["public.posters"][0] == 300

    # Sequence movement is visible too.
    pg_cluster.psql("SELECT nextval('poster_number_seq')", sample_db.name)
    assert fingerprint(sample_db)["sequence:public.poster_number_seq"] == (100301, "called")


# ------------------------------------------------------------------------------ SeaweedFS


def test_seaweed_put_get_roundtrip(s3_server: SeaweedS3, s3_bucket: str) -> None:
    store = s3_server.store(s3_bucket)
    payload = random.Random(7).randbytes(300_000)
    obstore.put(store, "dir/object.bin", payload)
    assert bytes(obstore.get(store, "dir/object.bin").bytes()) == payload
    listed = [meta["path"] for batch in obstore.list(store, prefix="dir") for meta in batch]
    assert listed == ["dir/object.bin"]
    obstore.delete(store, "dir/object.bin")
    with pytest.raises(FileNotFoundError):
        obstore.get(store, "dir/object.bin")


# ------------------------------------------------------------------------------ R2 proxy


def test_r2_proxy_passes_small_put(s3_server: SeaweedS3, s3_bucket: str, r2_proxy: R2Proxy) -> None:
    store = s3_server.store(s3_bucket, endpoint=r2_proxy.endpoint)
    obstore.put(store, "small.txt", b"hello r2")
    assert bytes(obstore.get(store, "small.txt").bytes()) == b"hello r2"
    assert r2_proxy.violations == []
    put = r2_proxy.find("PUT", "/small.txt")
    assert len(put) == 1 and put[0].status == 200 and put[0].body_length == 8
    # Visible directly on the upstream too (the proxy really forwarded it).
    direct = s3_server.store(s3_bucket)
    assert bytes(obstore.get(direct, "small.txt").bytes()) == b"hello r2"


def test_r2_proxy_checksum_headers_follow_r2s_checksum_types(
    s3_server: SeaweedS3, s3_bucket: str, r2_proxy: R2Proxy
) -> None:
    """R2's S3 API page lists CRC64NVME, CRC32, CRC32C, SHA1 and SHA256 checksums for object
    uploads: those pass; an algorithm outside that table, and streaming payloads, do not."""
    import base64
    import zlib

    raw = s3_server.raw(r2_proxy.endpoint)
    crc = base64.b64encode(zlib.crc32(b"data").to_bytes(4, "big")).decode()
    resp = raw.request("PUT", f"/{s3_bucket}/ok.txt", body=b"data", headers={"x-amz-checksum-crc32": crc})
    assert resp.status_code == 200, resp.text
    assert r2_proxy.violations == []

    resp = raw.request(
        "PUT", f"/{s3_bucket}/crc.txt", body=b"data", headers={"x-amz-checksum-md5": "jXd/OF09/siBXSD3SWAm3A=="}
    )
    assert resp.status_code == 400
    assert "<Code>InvalidRequest</Code>" in resp.text
    assert any("x-amz-checksum-md5" in v for v in r2_proxy.violations)

    resp = raw.request(
        "PUT",
        f"/{s3_bucket}/chunked.txt",
        body=b"data",
        headers={"content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32"},
    )
    assert resp.status_code == 501

    # Nothing reached the upstream.
    direct = s3_server.store(s3_bucket)
    for key in ("crc.txt", "chunked.txt"):
        with pytest.raises(FileNotFoundError):
            obstore.head(direct, key)


def test_r2_proxy_rejects_unequal_parts(
    s3_server: SeaweedS3, s3_bucket: str, r2_proxy: R2Proxy
) -> None:
    raw = s3_server.raw(r2_proxy.endpoint)
    key = "unequal.bin"
    upload_id = raw.create_multipart_upload(s3_bucket, key)
    sizes = [MIN_PART_SIZE, MIN_PART_SIZE + 1, 1000]
    etags = [
        raw.upload_part(s3_bucket, key, upload_id, n, b"x" * size)
        for n, size in enumerate(sizes, start=1)
    ]
    assert r2_proxy.parts[upload_id] == {1: sizes[0], 2: sizes[1], 3: sizes[2]}
    resp = raw.complete_multipart_upload(s3_bucket, key, upload_id, etags)
    assert resp.status_code == 400
    assert "<Code>InvalidPart</Code>" in resp.text
    assert any("same length" in v for v in r2_proxy.violations)
    with pytest.raises(FileNotFoundError):
        obstore.head(s3_server.store(s3_bucket), key)


def test_obstore_multipart_is_r2_compatible(
    s3_server: SeaweedS3, s3_bucket: str, r2_proxy: R2Proxy
) -> None:
    """obstore splits an irregular stream into equal 5 MiB parts without checksum headers."""
    store = s3_server.store(s3_bucket, endpoint=r2_proxy.endpoint)
    payload = random.Random(11).randbytes(12 * MiB + 12345)
    sizes = [1 * MiB, 3 * MiB + 7, 777, 64 * 1024, 4 * MiB, 2 * MiB]

    def chunks():
        offset = 0
        for size in sizes:
            yield payload[offset : offset + size]
            offset += size
        yield payload[offset:]

    obstore.put(store, "big.bin", chunks(), chunk_size=5 * MiB)
    assert bytes(obstore.get(store, "big.bin").bytes()) == payload
    assert r2_proxy.violations == []

    parts = sorted((int(r.params["partNumber"][0]), r.body_length) for r in r2_proxy.upload_parts())
    assert parts == [(1, 5 * MiB), (2, 5 * MiB), (3, len(payload) - 10 * MiB)]
    assert len(r2_proxy.find("POST")) == 2  # CreateMultipartUpload + Complete
    for rec in r2_proxy.requests:
        names = set(rec.headers)
        assert not any(n.startswith("x-amz-checksum") for n in names), rec.headers
        assert "x-amz-trailer" not in names and "x-amz-sdk-checksum-algorithm" not in names
        assert "aws-chunked" not in rec.headers.get("content-encoding", "")
        assert not rec.headers.get("x-amz-content-sha256", "").startswith("STREAMING-")


def test_obstore_delete_needs_disable_bulk_delete(
    s3_server: SeaweedS3, s3_bucket: str, r2_proxy: R2Proxy
) -> None:
    """Documents obstore behaviour: ``delete`` (even of one key) uses the bulk
    DeleteObjects API, which carries ``x-amz-checksum-sha256`` (plus Content-MD5);
    ``disable_bulk_delete=True`` switches to plain ``DELETE /key`` requests."""
    r2_proxy.write_interval = 0  # not about R2's one write per second per key
    bulk = s3_server.store(s3_bucket, endpoint=r2_proxy.endpoint)
    obstore.put(bulk, "gone.txt", b"x")
    with pytest.raises(Exception, match="x-amz-checksum-sha256"):
        obstore.delete(bulk, "gone.txt")
    rejected = r2_proxy.find("POST", f"/{s3_bucket}")[-1]
    assert rejected.query == "delete" and "x-amz-checksum-sha256" in rejected.headers

    single = s3_server.store(s3_bucket, endpoint=r2_proxy.endpoint, disable_bulk_delete=True)
    obstore.delete(single, "gone.txt")
    deleted = r2_proxy.find("DELETE", "/gone.txt")
    assert [r.status for r in deleted] == [204]
    assert not any(h.startswith("x-amz-checksum") for h in deleted[0].headers)


def test_r2_proxy_fault_hooks(s3_server: SeaweedS3, s3_bucket: str, r2_proxy: R2Proxy) -> None:
    store = s3_server.store(
        s3_bucket,
        endpoint=r2_proxy.endpoint,
        retry_config={
            "max_retries": 3,
            "backoff": {
                "init_backoff": timedelta(milliseconds=10),
                "max_backoff": timedelta(milliseconds=50),
            },
        },
    )
    r2_proxy.fail_next(method="PUT", path_contains="flaky", status=503)
    obstore.put(store, "flaky.txt", b"eventually")
    attempts = r2_proxy.find("PUT", "flaky")
    assert [r.status for r in attempts] == [503, 200]

    r2_proxy.reset_connection_next(method="GET", path_contains="flaky")
    assert bytes(obstore.get(store, "flaky.txt").bytes()) == b"eventually"
    gets = r2_proxy.find("GET", "flaky")
    assert gets[0].fault == "reset" and gets[-1].status == 200


# ------------------------------------------------------------------------------ remove_later


def test_remove_later_removes_the_folder_in_the_background(tmp_path) -> None:
    import time

    from tests.support import reap

    folder = tmp_path / "restored-x"
    (folder / "base" / "1").mkdir(parents=True)
    for i in range(50):
        (folder / "base" / "1" / str(i)).write_bytes(b"x" * 8192)
    reap.remove_later(folder)
    deadline = time.monotonic() + 30
    while reap.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reap.pending() == 0 and not folder.exists()
    assert tmp_path.is_dir()  # only the folder named goes
