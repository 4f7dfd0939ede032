"""Stalled (not failed) object-store connections give up in bounded time and are retried
where that is safe (issue #14). The timeouts are lowered so each test takes seconds; the
production figures are in docs/architecture.md ("Timeouts")."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from tests.reliability.harness import Setup

from posterity.errors import StorageUnreachable
from posterity.storage.s3 import S3Store
from posterity.storage.s3client import Timeouts

MiB = 1024 * 1024
# The retry window must outlast one timed-out attempt, or it is never retried.
SILENT = Timeouts(connect=0.5, request=1.0, retry=2.0, idle=1.0, max_retries=2)
FAST = Timeouts(connect=1.0, request=3.0, retry=5.0, idle=3.0, max_retries=3)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts every connection and never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        sock.close()


def store_at(endpoint: str, s3_server, bucket: str, timeouts: Timeouts = FAST) -> S3Store:
    return S3Store(bucket, "stall", endpoint=endpoint, region=s3_server.region,
                   access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key,
                   timeouts=timeouts, max_retries=timeouts.max_retries)


@pytest.mark.parametrize("call", ["stat", "put", "list", "get"])
def test_a_server_that_accepts_and_never_answers_fails_in_bounded_time(silent_server, s3_server, call):
    store = store_at(silent_server, s3_server, "bucket", SILENT)
    t0 = time.monotonic()
    with pytest.raises(StorageUnreachable) as exc:
        if call == "stat":
            store.stat("k")
        elif call == "put":
            store.put("k", b"x" * 1000)
        elif call == "list":
            list(store.list("backups/"))
        else:
            store.get_bytes("k")
    took = time.monotonic() - t0
    # put settles a lost reply with a stat and resends once: up to three bounded calls.
    assert took < 3 * SILENT.worst_case, took
    assert "stopped answering" in exc.value.message


def test_a_request_that_hangs_once_is_retried_and_lands(s3_server, s3_bucket, r2_proxy):
    store = store_at(r2_proxy.endpoint, s3_server, s3_bucket)
    r2_proxy.hang_next("PUT", "/small", seconds=30)
    t0 = time.monotonic()
    store.put("small", b"payload")
    assert time.monotonic() - t0 < FAST.worst_case
    assert store.get_bytes("small") == b"payload"
    assert [r.fault for r in r2_proxy.find("PUT", "/small")][:1] == ["hang"]


def test_an_upload_that_stalls_mid_part_is_retried_and_the_object_is_whole(s3_server, s3_bucket, r2_proxy):
    store = store_at(r2_proxy.endpoint, s3_server, s3_bucket)
    data = os.urandom(20 * MiB)
    r2_proxy.hang_next("PUT", "/big.bin", seconds=30, after_bytes=1 * MiB, query_contains="partNumber=2")
    t0 = time.monotonic()
    store.put("big.bin", iter(data[i : i + MiB] for i in range(0, len(data), MiB)), part_size=8 * MiB)
    assert time.monotonic() - t0 < FAST.worst_case + 5
    assert r2_proxy._faults == [] and any(r.fault == "hang" for r in r2_proxy.requests)
    assert r2_proxy.violations == []
    assert store.get_bytes("big.bin") == data


def test_an_upload_that_always_stalls_fails_in_bounded_time_and_commits_nothing(s3_server, s3_bucket, r2_proxy):
    store = store_at(r2_proxy.endpoint, s3_server, s3_bucket)
    data = os.urandom(20 * MiB)
    r2_proxy.hang_next("PUT", "/stuck.bin", seconds=30, after_bytes=1 * MiB, times=1000,
                       query_contains="partNumber")
    t0 = time.monotonic()
    with pytest.raises(StorageUnreachable):
        store.put("stuck.bin", iter(data[i : i + MiB] for i in range(0, len(data), MiB)), part_size=8 * MiB)
    assert time.monotonic() - t0 < 2 * FAST.worst_case
    r2_proxy.clear_faults()
    assert store.stat("stuck.bin") is None


def test_request_timeout_from_the_config_bounds_a_backup(proxy_setup: Setup, r2_proxy):
    """[repository] request_timeout reaches the store the CLI builds: a manifest PUT that
    hangs is given up after 2 s and sent again, and the backup succeeds."""
    s = proxy_setup
    s.repo_extra += "\nconnect_timeout = 1\nrequest_timeout = 2"
    s.write_config()
    r2_proxy.hang_next("PUT", "manifest.json", seconds=60)
    t0 = time.monotonic()
    r = s.run("backup", "db", "--json", timeout=60)
    took = time.monotonic() - t0
    assert r.code == 0, r
    assert any(req.fault == "hang" for req in r2_proxy.requests)
    assert took < 30, took
    assert len(s.backup_ids()) == 1
