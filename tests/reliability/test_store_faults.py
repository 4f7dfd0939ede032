"""Object store faults, injected by the R2 proxy in front of a real S3 server (SeaweedFS).

Transient faults (5xx, 429, connection resets, a reply lost after the write landed, a
response cut mid-body) are absorbed: the operation succeeds, the proxy shows the fault
really happened, and the backup reads back whole. Persistent faults fail cleanly: the user
gets the object's name and a hint, nothing uncommitted is listed, nothing committed is
lost, and the next run works.
"""

from __future__ import annotations

import os

import pytest
from tests.reliability.harness import Setup, unique

from posterity.demo import fingerprint
from posterity.storage.s3 import S3Store

MiB = 1024 * 1024


def all_triggered(proxy, n: int) -> None:
    """Every injected fault happened (a test whose fault never fired proves nothing)."""
    assert proxy._faults == [], f"faults never triggered: {proxy._faults}"
    assert len([r for r in proxy.requests if r.fault]) == n, [r.fault for r in proxy.requests]


def assert_reads_back(s: Setup) -> None:
    r = s.run("verify", "--read-data")
    assert r.code == 0 and "no problems found" in r.out, r


def test_transient_faults_during_backup_are_absorbed(proxy_setup: Setup, r2_proxy):
    s = proxy_setup
    r2_proxy.fail_next("PUT", "locks/backup-db", status=500)
    r2_proxy.reset_connection_next("PUT", "globals.sql.zst.age")
    r2_proxy.fail_next("PUT", ".pgdump.zst.age", status=503, times=2)
    r2_proxy.fail_next("PUT", "manifest.json", status=429)
    r = s.run("backup", "db", "--json")
    assert r.code == 0, r
    all_triggered(r2_proxy, 5)
    assert s.backup_ids() == [r.json()["backups"][0]["id"]]
    assert s.keys("locks/") == []
    assert_reads_back(s)


def test_lost_replies_are_settled_not_repeated(proxy_setup: Setup, r2_proxy):
    """The lock and the manifest land but their replies are lost (the client sees a reset):
    the backup sees its own bytes there and carries on — one backup listed, lock released.
    (Before the fix the lost manifest reply failed the backup and deleted the payloads of
    the manifest that had in fact been committed.)"""
    s = proxy_setup
    r2_proxy.lose_reply_next("PUT", "locks/backup-db")
    r2_proxy.lose_reply_next("PUT", "manifest.json")
    r = s.run("backup", "db", "--json")
    assert r.code == 0, r
    all_triggered(r2_proxy, 2)
    assert s.backup_ids() == [r.json()["backups"][0]["id"]]
    assert s.keys("locks/") == []
    assert_reads_back(s)


def test_lost_manifest_reply_that_cannot_be_settled_keeps_the_payloads(
    proxy_setup: Setup, r2_proxy
):
    """The manifest lands, its reply is lost, and the store cannot even be asked: the
    backup reports the error but must not delete the payloads of a manifest that exists."""
    s = proxy_setup
    r2_proxy.lose_reply_next("PUT", "manifest.json")
    r2_proxy.fail_next("HEAD", "manifest.json", status=500, times=100)
    r = s.run("backup", "db")
    r2_proxy.clear_faults()
    assert r.code == 4 and "manifest.json" in r.err and "hint:" in r.err, r
    (backup_id,) = s.backup_ids()  # it was committed after all ...
    assert backup_id in r.err
    assert_reads_back(s)  # ... and its payloads are all there


def test_transient_faults_during_restore_are_absorbed(proxy_setup: Setup, r2_proxy, module_db):
    s = proxy_setup
    s.backup()
    r2_proxy.fail_next("GET", ".pgdump.zst.age", status=500)
    r2_proxy.reset_connection_next("GET", ".pgdump.zst.age")
    r2_proxy.cut_body_next("GET", ".pgdump.zst.age", after_bytes=50_000)
    r2_proxy.fail_next("GET", None, status=503, query_contains="list-type")
    target = unique("faulted")
    r = s.run("restore", "db", "latest", "--to-database", target)
    try:
        assert r.code == 0, r
        all_triggered(r2_proxy, 4)
        resumed = [q for q in r2_proxy.find("GET", ".pgdump.zst.age") if q.status == 206]
        assert resumed, "after the cut, the download resumed with a range request"
        assert fingerprint(module_db.cluster.dsn(target)) == module_db.fingerprint
    finally:
        module_db.cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_persistent_payload_put_failure_fails_cleanly(proxy_setup: Setup, r2_proxy):
    s = proxy_setup
    first = s.backup()
    r2_proxy.fail_next("PUT", ".pgdump.zst.age", status=500, times=100)
    r = s.run("backup", "db")
    r2_proxy.clear_faults()
    assert r.code == 4, r
    assert "error: Object store error on backups/db/" in r.err and ".pgdump.zst.age" in r.err, r
    assert (
        "500 Internal Server Error" in r.err and "hint: Check the [repository] settings" in r.err
    ), r
    assert s.backup_ids() == [first]  # nothing uncommitted listed, nothing committed lost
    leftovers = [k for k in s.keys("backups/") if not k.startswith(f"backups/db/{first}/")]
    assert leftovers == []  # the failed backup removed what it had written
    assert s.keys("locks/") == []
    second = s.backup()  # the next run works
    assert s.backup_ids() == [first, second]
    assert_reads_back(s)


def test_persistent_manifest_put_failure_fails_cleanly(proxy_setup: Setup, r2_proxy):
    s = proxy_setup
    r2_proxy.fail_next("PUT", "manifest.json", status=503, times=100)
    r = s.run("backup", "db")
    r2_proxy.clear_faults()
    assert r.code == 4 and "manifest.json" in r.err and "hint:" in r.err, r
    assert s.backup_ids() == []
    assert s.keys("backups/") == []  # payloads of the uncommitted backup removed (manifest absent)
    s.backup()
    assert len(s.backup_ids()) == 1


def test_list_cut_mid_body_fails_with_a_message_then_works(proxy_setup: Setup, r2_proxy):
    s = proxy_setup
    backup_id = s.backup()
    r2_proxy.cut_body_next("GET", None, query_contains="list-type", after_bytes=100)
    r = s.run("list")
    assert r.code == 4, r
    assert "error: Could not reach" in r.err and "can be retried safely" in r.err, r
    assert s.backup_ids() == [backup_id]


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(
            lambda p: p.fail_next("POST", None, status=503, query_contains="uploadId"), id="503"
        ),
        pytest.param(
            lambda p: p.reset_connection_next("POST", None, query_contains="uploadId"), id="reset"
        ),
        pytest.param(
            lambda p: p.lose_reply_next("POST", None, query_contains="uploadId"), id="lost-reply"
        ),
        pytest.param(
            lambda p: p.fail_next("PUT", None, status=500, query_contains="partNumber"),
            id="500-part",
        ),
    ],
)
def test_multipart_upload_faults_are_retried(s3_server, s3_bucket, r2_proxy, inject):
    """A payload larger than one part goes up in R2-legal equal parts; a fault on a part or
    on CompleteMultipartUpload is retried and the object is whole."""
    store = S3Store(
        s3_bucket,
        "mp",
        endpoint=r2_proxy.endpoint,
        region=s3_server.region,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
    )
    data = os.urandom(20 * MiB)
    inject(r2_proxy)
    n = store.put(
        "big.bin", iter(data[i : i + MiB] for i in range(0, len(data), MiB)), part_size=8 * MiB
    )
    assert n == len(data)
    assert r2_proxy._faults == [] and any(req.fault for req in r2_proxy.requests)
    assert r2_proxy.violations == []
    assert store.get_bytes("big.bin") == data
