"""The S3 client is built from Posterity's configuration alone, speaks R2's dialect end to end
through the R2-rules proxy (r2:// opener, region auto), and names R2's errors."""

from __future__ import annotations

import os
import random
import re

import pytest

from posterity.errors import ConfigError, ObjectExists, StorageError, StreamTooLarge
from posterity.storage import open_store
from posterity.storage.s3 import S3Store
from posterity.storage.s3errors import map_error

MiB = 1024 * 1024

# Variables hosts that run other S3 tools set, each of which used to change our requests.
HOSTILE_ENV = {
    "AWS_CHECKSUM_ALGORITHM": "CRC32",  # was: the store could not even be built
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEHostileToken",  # was: x-amz-security-token -> R2 403
    "AWS_CONDITIONAL_PUT": "disabled",  # was: every create-only write failed
    "AWS_REQUEST_PAYER": "true",  # was: x-amz-request-payer, which R2 does not implement
    "AWS_UNSIGNED_PAYLOAD": "true",
    "AWS_SKIP_SIGNATURE": "true",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_DEFAULT_REGION": "eu-west-3",
}


def _store(s3_server, bucket: str, endpoint: str) -> S3Store:
    return S3Store(
        bucket, "repo", endpoint=endpoint, region="auto",
        access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key,
    )


def _session(store: S3Store) -> list[tuple[str, str]]:
    """Every kind of request a backup, restore and prune sends; returns what each got back."""
    payload = random.Random(5).randbytes(20 * MiB + 123)
    out: list[tuple[str, str]] = []
    store.put("manifest.json", b"{}")
    with pytest.raises(ObjectExists):
        store.put("manifest.json", b"{...}")
    out.append(("create-only twice", "ObjectExists"))
    store.put("payload.bin", (payload[i : i + MiB] for i in range(0, len(payload), MiB)), part_size=8 * MiB)
    assert store.get_bytes("payload.bin") == payload
    assert sorted(i.key for i in store.list("")) == ["manifest.json", "payload.bin"]
    store.delete(["payload.bin"])
    assert store.stat("payload.bin") is None
    return out


def _shape(proxy) -> list[tuple[str, str, int | None, frozenset[str], str]]:
    """What distinguishes one request from another, minus dates, signatures and ids."""
    shapes = []
    for r in proxy.requests:
        names = frozenset(h for h in r.headers if h not in ("content-length",))
        sha = r.headers.get("x-amz-content-sha256", "")
        sha_kind = sha if sha.isupper() else "hex"
        query = "&".join(sorted(k for k in r.params))
        key = r.path.strip("/").partition("/")[2]  # without the bucket
        shapes.append((r.method, f"{key}?{query}", r.status, names, sha_kind))
    return shapes


def test_aws_variables_on_the_host_change_nothing(s3_server, r2_proxy, monkeypatch):
    plain = f"plain-{random.randrange(1 << 30):x}"
    hostile = f"hostile-{random.randrange(1 << 30):x}"
    s3_server.create_bucket(plain)
    s3_server.create_bucket(hostile)
    r2_proxy.write_interval = 0  # timing is not what this test compares

    r2_proxy.reset()
    assert _session(_store(s3_server, plain, r2_proxy.endpoint))
    without = _shape(r2_proxy)

    for k, v in HOSTILE_ENV.items():
        monkeypatch.setenv(k, v)
    r2_proxy.reset()
    assert _session(_store(s3_server, hostile, r2_proxy.endpoint))
    with_env = _shape(r2_proxy)

    assert r2_proxy.violations == []
    assert [s[:3] for s in with_env] == [s[:3] for s in without]
    assert with_env == without
    for r in r2_proxy.requests:
        assert "x-amz-security-token" not in r.headers and "x-amz-request-payer" not in r.headers
        assert not any(h.startswith("x-amz-checksum") for h in r.headers)
    # The variables are back for everything else in the process.
    assert os.environ["AWS_CHECKSUM_ALGORITHM"] == "CRC32"


def test_only_the_two_documented_credential_variables_are_honoured(s3_server, s3_bucket, r2_proxy, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "would-make-R2-answer-403")
    store = S3Store(s3_bucket, "repo", endpoint=r2_proxy.endpoint)
    store.put("x", b"y")
    assert store.get_bytes("x") == b"y"
    assert all("x-amz-security-token" not in r.headers for r in r2_proxy.requests)


def test_r2_opener_end_to_end_through_the_proxy_signs_for_region_auto(s3_server, s3_bucket, r2_proxy):
    store = open_store(
        f"r2://0123456789abcdef0123456789abcdef/{s3_bucket}/prod",
        endpoint=r2_proxy.endpoint,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
    )
    assert isinstance(store, S3Store) and store.location.startswith(f"r2://{s3_bucket}/prod")
    data = random.Random(7).randbytes(17 * MiB + 5)
    store.put("backups/db/1/payload", iter([data[i : i + 3 * MiB] for i in range(0, len(data), 3 * MiB)]))
    store.put("backups/db/1/manifest.json", b"{}")
    with pytest.raises(ObjectExists):  # (the same bytes again would count as our own lost reply)
        store.put("backups/db/1/manifest.json", b"{...}")
    assert store.get_bytes("backups/db/1/payload") == data
    assert {i.key for i in store.list("backups/")} == {"backups/db/1/payload", "backups/db/1/manifest.json"}
    store.delete(["backups/db/1/payload"])
    assert r2_proxy.violations == []
    scopes = {re.search(r"Credential=[^/]+/\d{8}/([^/]*)/s3/", r.headers["authorization"]).group(1)  # type: ignore[union-attr]
              for r in r2_proxy.requests}
    assert scopes == {"auto"}
    assert any(r.is_complete_multipart for r in r2_proxy.requests)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("r2://acct/b/p", "acct.r2.cloudflarestorage.com"),
        ("r2://acct.eu/b/p", "acct.eu.r2.cloudflarestorage.com"),
        ("r2://acct.fedramp/b/p", "acct.fedramp.r2.cloudflarestorage.com"),
    ],
)
def test_r2_jurisdictions_have_their_endpoints(url, host):
    store = open_store(url, access_key_id="a", secret_access_key="b")
    assert store.location == f"r2://b/p at {host}"
    assert store.unsigned_payload  # type: ignore[attr-defined]  # https: the payload is not hashed


def test_unknown_r2_jurisdiction_is_a_config_error():
    with pytest.raises(ConfigError) as exc:
        open_store("r2://acct.mars/b/p")
    assert "jurisdiction" in exc.value.message and "r2://<account-id>.eu/" in exc.value.hint


def test_long_error_keeps_r2s_error_code():
    url = "http://127.0.0.1:1/bucket/" + "backups/db/20260101T000000Z-abcd/" * 12 + "x?partNumber=7&uploadId=" + "u" * 200
    text = (f"Generic S3 error: Error performing PUT {url} in 1s - Server returned non-2xx status code: "
            "400 Bad Request: <Error><Code>InvalidPart</Code><Message>All non-trailing parts must have the "
            "same length</Message></Error>")
    err = map_error(Exception(text), "k", "r2://b/p")
    assert type(err) is StorageError and "[InvalidPart]" in err.message


def test_409_conflict_is_not_reported_as_already_exists():
    text = ("Generic S3 error: Error performing PUT http://x/b/k - Server returned non-2xx status code: "
            "409 Conflict: <Error><Code>ConditionalRequestConflict</Code></Error>")
    err = map_error(Exception(text), "k", "r2://b/p")
    assert not isinstance(err, ObjectExists) and "conflict" in err.message.lower()


def test_r2_409_on_a_create_only_put_is_retried_and_lands(s3_server, s3_bucket, r2_proxy):
    store = _store(s3_server, s3_bucket, r2_proxy.endpoint)
    r2_proxy.fail_next("PUT", "/lock.json", status=409, code="ConditionalRequestConflict")
    store.put("lock.json", b"mine")
    assert store.get_bytes("lock.json") == b"mine"
    assert [r.status for r in r2_proxy.find("PUT", "/lock.json")] == [409, 200]


def test_a_second_write_within_a_second_gets_429_and_is_retried(s3_server, s3_bucket, r2_proxy):
    """A lock's delete and re-create land on one key within R2's one write per second."""
    store = _store(s3_server, s3_bucket, r2_proxy.endpoint)
    store.put("locks/backup-db.json", b"1")
    store.delete(["locks/backup-db.json"])
    store.put("locks/backup-db.json", b"2")
    assert store.get_bytes("locks/backup-db.json") == b"2"
    statuses = [r.status for r in r2_proxy.requests if r.method in ("PUT", "DELETE")]
    assert 429 in statuses and statuses[-1] == 200


def test_stream_estimated_beyond_the_part_ceiling_is_refused_before_any_upload(s3_server, s3_bucket, r2_proxy):
    from posterity.repository.repository import Repository

    store = S3Store(s3_bucket, "repo", endpoint=r2_proxy.endpoint, access_key_id=s3_server.access_key,
                    secret_access_key=s3_server.secret_key, max_part_size=16 * MiB)
    repo = Repository(store)
    from posterity.pipeline.stages import Stages

    with pytest.raises(StreamTooLarge) as exc:
        repo.write_payload("backups/db/x/base.tar.zst.age", _NeverRead(), Stages(("age1" + "q" * 58,)),
                           expected_size=100 * 2**30)
    assert "max_part_size_mib" in exc.value.hint and "Nothing was uploaded" in exc.value.message
    assert r2_proxy.requests == []


class _NeverRead:
    """A stream that fails the test if anything reads it."""

    def read(self, *_: object) -> bytes:
        raise AssertionError("the stream was read before the size was checked")

    def readinto(self, *_: object) -> int:
        raise AssertionError("the stream was read before the size was checked")


def test_a_stream_that_outgrows_its_parts_is_stopped_and_nothing_is_stored(s3_server, s3_bucket, r2_proxy,
                                                                          monkeypatch):
    import posterity.storage.s3 as s3mod

    monkeypatch.setattr(s3mod, "MAX_PARTS", 2)  # 2 x 8 MiB: a 20 MiB stream outgrows them
    r2_proxy.max_parts = 2
    store = _store(s3_server, s3_bucket, r2_proxy.endpoint)
    data = random.Random(3).randbytes(20 * MiB)
    with pytest.raises(StreamTooLarge) as exc:
        store.put("big", (data[i : i + MiB] for i in range(0, len(data), MiB)), part_size=8 * MiB)
    assert "nothing was committed" in exc.value.message
    assert store.stat("big") is None
    assert not any(r.is_complete_multipart for r in r2_proxy.requests)
    assert r2_proxy.violations == []


def test_the_lean_wal_entry_passes_the_timeouts_and_ceiling_on(tmp_path):
    """archive_command's lean entry reads [repository] without the schema: the same bounds."""
    from posterity.cli.walfast import LeanContext, _NotPlain
    from posterity.config import loads_config

    text = ('[repository]\nurl = "s3://bucket/p"\nendpoint = "http://127.0.0.1:9"\nconnect_timeout = 2\n'
            'request_timeout = 7.5\nmax_part_size_mib = 64\n[encryption]\nrecipients = '
            '["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]\n'
            '[sources.pitr]\nkind = "postgres-physical"\ndsn = "postgresql://r@localhost/postgres"\n')
    path = tmp_path / "posterity.toml"
    path.write_text(text)
    lean, full = LeanContext(path), loads_config(text)
    store = lean.archive("pitr")._store
    assert store.timeouts.connect == full.repository.connect_timeout == 2
    assert store.timeouts.request == full.repository.request_timeout == 7.5
    assert store.max_part_size == full.repository.max_part_size_mib * MiB == 64 * MiB
    path.write_text(text.replace("request_timeout = 7.5", 'request_timeout = "7"'))
    with pytest.raises(_NotPlain):
        LeanContext(path)
