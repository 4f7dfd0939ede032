"""One contract suite over every ObjectStore: memory, local folder, real S3 (SeaweedFS),
and S3 through a proxy that enforces Cloudflare R2's rules."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from posterity.errors import BucketNotFound, ObjectExists, ObjectNotFound, StorageAuthError
from posterity.storage import MIN_PART_SIZE, choose_part_size, open_store
from posterity.storage.local import LocalStore
from posterity.storage.memory import MemoryStore
from posterity.storage.s3 import S3Store

MiB = 1024 * 1024


def make_s3(server, bucket, endpoint=None, secret=None, prefix="repo", max_retries=1):
    return S3Store(
        bucket,
        prefix,
        endpoint=endpoint or server.endpoint,
        region=server.region,
        access_key_id=server.access_key,
        secret_access_key=secret or server.secret_key,
        max_retries=max_retries,
    )


@pytest.fixture(params=["memory", "local", "s3", "r2proxy"])
def store(request, tmp_path):
    kind = request.param
    if kind == "memory":
        return MemoryStore(f"t{id(request)}")
    if kind == "local":
        return LocalStore(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    if kind == "s3":
        return make_s3(server, bucket)
    proxy = request.getfixturevalue("r2_proxy")
    # Three retries: R2 answers a second write to a key within a second with 429, retried
    # after at least 3 x 0.5 s of backoff (production stores retry five times).
    s = make_s3(server, bucket, endpoint=proxy.endpoint, max_retries=3)
    s._proxy = proxy  # type: ignore[attr-defined]
    return s


def chunks_of(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_put_get_stat_roundtrip(store):
    assert store.stat("a/b.txt") is None
    n = store.put("a/b.txt", b"hello")
    assert n == 5
    assert store.get_bytes("a/b.txt") == b"hello"
    info = store.stat("a/b.txt")
    assert info is not None and info.size == 5 and info.key == "a/b.txt"


def test_put_if_absent_refuses_existing_key_and_keeps_content(store):
    store.put("k", b"first")
    with pytest.raises(ObjectExists):
        store.put("k", b"second", if_absent=True)
    with pytest.raises(ObjectExists):
        store.put("k", iter([b"second"]), if_absent=True)
    assert store.get_bytes("k") == b"first"


def test_overwrite_when_asked(store):
    store.put("k", b"first")
    store.put("k", b"second", if_absent=False)
    assert store.get_bytes("k") == b"second"


def test_get_missing_raises_object_not_found(store):
    with pytest.raises(ObjectNotFound):
        store.get_bytes("missing/key")


def test_list_by_prefix(store):
    for k in ["backups/db/1/m.json", "backups/db/2/m.json", "backups/files/1/x", "locks/a.json"]:
        store.put(k, k.encode())
    keys = sorted(i.key for i in store.list("backups/db/"))
    assert keys == ["backups/db/1/m.json", "backups/db/2/m.json"]
    assert sorted(i.key for i in store.list("backups/")) == [
        "backups/db/1/m.json",
        "backups/db/2/m.json",
        "backups/files/1/x",
    ]
    assert {i.size for i in store.list("locks/")} == {len(b"locks/a.json")}


def test_delete_is_idempotent(store):
    store.put("x/1", b"1")
    store.put("x/2", b"2")
    store.delete(["x/1", "x/does-not-exist"])
    assert store.stat("x/1") is None
    assert store.get_bytes("x/2") == b"2"
    store.delete(["x/1"])


def test_streamed_multipart_object_roundtrip_with_equal_parts(store):
    # Slightly over two parts, fed in odd-sized chunks: the store must cut equal parts.
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    n = store.put("big/object", chunks_of(data, 700_001), part_size=MIN_PART_SIZE)
    assert n == len(data)
    got = b"".join(store.get("big/object"))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    proxy = getattr(store, "_proxy", None)
    if proxy is not None:
        parts = [r for r in proxy.requests if r.method == "PUT" and "partNumber=" in (r.query or "")]
        assert len(parts) == 3, [r.query for r in parts]
        sizes = sorted(r.body_length for r in parts)
        assert sizes[1] == sizes[2] == MIN_PART_SIZE and sizes[0] == 12345
        assert proxy.violations == []
        for r in proxy.requests:
            lower = {k.lower(): v for k, v in r.headers.items()}
            assert not any(h.startswith("x-amz-checksum") for h in lower), lower
            assert "aws-chunked" not in lower.get("content-encoding", "")


def test_concurrent_create_only_one_wins(store):
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            store.put("locks/race.json", f"{i}".encode(), if_absent=True)
            results.append("won")
        except ObjectExists:
            results.append("lost")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("won") == 1, results


def test_part_size_grows_with_expected_size():
    assert choose_part_size(None) == MIN_PART_SIZE
    assert choose_part_size(10 * MiB) == MIN_PART_SIZE
    for size in (50 * 1024**3, 1024**4, 4 * 1024**4):
        part = choose_part_size(size)
        assert part % MiB == 0
        # Even a stream twice as large as expected fits in 10,000 parts.
        assert 2 * size / part <= 10_000


def test_missing_bucket_is_a_clear_error(s3_server):
    store = make_s3(s3_server, "no-such-bucket-here")
    with pytest.raises(BucketNotFound) as exc:
        store.check()
    assert "no-such-bucket-here" in exc.value.message


def test_wrong_credentials_are_a_clear_error(s3_server, s3_bucket):
    store = make_s3(s3_server, s3_bucket, secret="wrong-secret-value-123")
    with pytest.raises(StorageAuthError) as exc:
        store.put("x", b"y")
    assert "wrong-secret-value-123" not in str(exc.value)


def test_open_store_by_url(tmp_path):
    s = open_store(f"file://{tmp_path}/repo")
    assert isinstance(s, LocalStore)
    r2 = open_store("r2://acct123/bucket/prefix", access_key_id="a", secret_access_key="b")
    assert isinstance(r2, S3Store) and "acct123.r2.cloudflarestorage.com" in r2.location
    from posterity.errors import ConfigError

    with pytest.raises(ConfigError):
        open_store("ftp://x/y")


def test_large_object_is_read_back_exactly_through_ranged_gets(s3_server, s3_bucket, monkeypatch):
    import posterity.storage.s3 as s3mod

    monkeypatch.setattr(s3mod, "RANGED_GET_THRESHOLD", 1 * MiB)
    monkeypatch.setattr(s3mod, "RANGE_SIZE", 1 * MiB + 3)
    store = make_s3(s3_server, s3_bucket)
    data = os.urandom(5 * MiB + 17)
    store.put("ranged/object", chunks_of(data, MiB), part_size=MIN_PART_SIZE)
    chunks = list(store.get("ranged/object"))
    assert len(chunks) == -(-len(data) // (MiB + 3))  # one chunk per range, the last shorter
    assert len(chunks) > 1
    assert b"".join(chunks) == data
