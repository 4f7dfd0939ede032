"""One contract suite over the Repository — the only door to the store — run over the memory,
local-folder and S3 (SeaweedFS) stores: payloads and manifests, find, the inventory, forget,
locks, restore points, drill reports, audit records and the WAL archive. Each test proves
data: what is written is read back byte for byte, and a write that fails midway commits
nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest

from posterity import __version__
from posterity.errors import (
    BackupNotFound,
    ChecksumMismatch,
    DecryptionFailed,
    LockHeld,
    ManifestInvalid,
    ObjectExists,
    ObjectNotFound,
    PosterityError,
    RepositoryExists,
    RepositoryNotInitialised,
)
from posterity.pipeline import Stages
from posterity.repository import ArtifactRecord, Manifest, Repository, layout, new_backup_id
from posterity.repository import walnames as wal
from posterity.repository.point import Point, PointMember
from posterity.repository.walarchive import WalConflict, WalNotArchived
from posterity.storage.local import LocalStore
from posterity.storage.memory import MemoryStore
from posterity.storage.s3 import S3Store

SEG = 16 * 1024 * 1024


@pytest.fixture(params=["memory", "local", "s3"])
def repo(request, tmp_path: Path) -> Repository:
    if request.param == "memory":
        store = MemoryStore(f"contract{id(request)}")
    elif request.param == "local":
        store = LocalStore(tmp_path / "store")
    else:
        server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        store = S3Store(bucket, "repo", endpoint=server.endpoint, region=server.region,
                        access_key_id=server.access_key, secret_access_key=server.secret_key, max_retries=1)
    return Repository(store, cache_dir=tmp_path / "state" / "cache")


@pytest.fixture(scope="module")
def key() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


@pytest.fixture
def stages(key) -> Stages:
    return Stages((str(key.to_public()),), zstd_level=3, zstd_threads=0)


def _backup(repo: Repository, stages: Stages, source: str, payloads: dict[str, bytes], *,
            when: datetime | None = None) -> Manifest:
    """What ``operations.backup`` does: payloads first, the manifest last."""
    bid = new_backup_id(when)
    records = []
    for name, data in payloads.items():
        k = layout.payload_key(source, bid, name)
        size, sha, raw = repo.write_payload(k, io.BytesIO(data), stages, expected_size=len(data))
        records.append(ArtifactRecord(name, k, "test", size, sha, raw, stages.specs()))
    now = (when or datetime.now(UTC)).isoformat()
    m = Manifest(bid, source, "files", now, now, __version__, "host", records)
    repo.commit(m)
    return m


def _read(repo: Repository, art: ArtifactRecord, key) -> bytes:
    out = io.BytesIO()
    repo.read_artifact(art, out, [key])
    return out.getvalue()


# -- descriptor ------------------------------------------------------------------------------


def test_init_once_and_descriptor(repo, stages):
    with pytest.raises(RepositoryNotInitialised):
        repo.descriptor()
    desc = repo.init(list(stages.recipients))
    assert repo.descriptor()["id"] == desc["id"]
    repo.require_initialised()
    with pytest.raises(RepositoryExists):
        repo.init(list(stages.recipients))


# -- write, commit, find, read back ----------------------------------------------------------


def test_write_commit_find_and_read_back_byte_for_byte(repo, stages, key):
    data = {"db": os.urandom(300_000) + bytes(200_000), "globals": b"create role app;\n"}
    m = _backup(repo, stages, "db", data)
    found = repo.find(m.id[:12], "db")
    assert found.id == m.id and [a.key for a in found.artifacts] == [a.key for a in m.artifacts]
    for art in found.artifacts:
        got = _read(repo, art, key)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data[art.name]).hexdigest()
    assert repo.find("latest", "db").id == m.id
    assert [x.id for x in repo.manifests("db")] == [m.id]
    assert repo.is_committed("db", m.id)
    with pytest.raises(BackupNotFound):
        repo.find("latest", "other")


def test_open_artifact_streams_the_decoded_bytes_and_checks_the_stored_object_at_the_end(repo, stages, key):
    data = os.urandom(3_000_000)  # several chunks through the bounded queue
    m = _backup(repo, stages, "db", {"db": data})
    art = m.artifacts[0]
    with repo.open_artifact(art, [key]) as reader:
        assert b"".join(reader.chunks()) == data
    with repo.open_artifact(art, [key]) as reader:  # pulled line by line, like a parser does
        buffered = io.BufferedReader(reader)
        head = buffered.read(1000)
        reader.finish()
    assert head == data[:1000]
    with repo.open_artifact(art, [key]) as reader:  # closed early: the decoding thread stops
        assert reader.read(10) == data[:10]
    with pytest.raises(ValueError):  # and reading on is an error, never a wait
        reader.finish()
    damaged = ArtifactRecord(**{**art.__dict__, "sha256": "0" * 64})
    with repo.open_artifact(damaged, [key]) as reader, pytest.raises(ChecksumMismatch):
        reader.finish()
    with repo.open_artifact(art, [pyrage.x25519.Identity.generate()]) as reader, pytest.raises(DecryptionFailed):
        reader.finish()


def test_a_manifest_is_written_once(repo, stages):
    # (Resending the very same bytes is a retry of our own write: S3 settles it as success.)
    m = _backup(repo, stages, "db", {"db": b"one"})
    other = Manifest(m.id, m.source, m.kind, m.started_at, m.finished_at, m.posterity_version, "other-host",
                     m.artifacts, tags=["forged"])
    with pytest.raises(ObjectExists):
        repo.commit(other)
    assert repo.find(m.id, "db").host == "host" and repo.find(m.id, "db").tags == []


def test_a_payload_stream_failing_midway_commits_nothing(repo, stages):
    class Breaks(io.RawIOBase):
        def __init__(self) -> None:
            self.left = 3

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            if self.left == 0:
                raise OSError("the source died")
            self.left -= 1
            n = min(len(b), 65536)
            b[:n] = os.urandom(n)
            return n

    bid = new_backup_id()
    k = layout.payload_key("db", bid, "db")
    with pytest.raises((OSError, PosterityError), match="the source died"):  # the cause is named
        repo.write_payload(k, Breaks(), stages, expected_size=1 << 20)  # type: ignore[arg-type]
    repo.abandon([k])
    assert repo.manifests() == [] and not repo.is_committed("db", bid)
    assert repo.inventory().backups == {}
    with pytest.raises(BackupNotFound):
        repo.find(bid)


def test_a_wrong_identity_reads_nothing(repo, stages):
    m = _backup(repo, stages, "db", {"db": b"secret rows"})
    with pytest.raises(DecryptionFailed):
        _read(repo, m.artifacts[0], pyrage.x25519.Identity.generate())


def test_a_damaged_manifest_hides_no_other_backup(repo, stages):
    good = _backup(repo, stages, "db", {"db": b"good"})
    bad_id = new_backup_id()
    bad_key = layout.manifest_key("db", bad_id)
    repo.store.put(bad_key, b"{not json")
    assert [m.id for m in repo.manifests("db")] == [good.id]  # list and restore latest still work
    got = dict(repo.read_manifests(repo.inventory("db").manifest_keys()))
    assert isinstance(got[bad_key], ManifestInvalid) and got[layout.manifest_key("db", good.id)].id == good.id


# -- inventory and forget --------------------------------------------------------------------


def test_one_inventory_shows_committed_and_uncommitted_backups(repo, stages):
    a = _backup(repo, stages, "db", {"db": b"a" * 1000})
    b = _backup(repo, stages, "files", {"etc": b"b" * 10})
    orphan = new_backup_id()
    orphan_key = layout.payload_key("db", orphan, "db")
    repo.write_payload(orphan_key, io.BytesIO(b"never committed"), stages)
    inv = repo.inventory()
    assert inv.sources() == {"db", "files"}
    assert inv.manifest_keys() == sorted([layout.manifest_key("db", a.id), layout.manifest_key("files", b.id)])
    assert inv.committed("db", a.id) and not inv.committed("db", orphan)
    assert inv.objects[a.artifacts[0].key] == a.artifacts[0].size
    assert orphan_key in inv.objects
    assert set(repo.inventory("files").backups) == {("files", b.id)}


def test_forget_removes_a_backup_manifest_first(repo, stages):
    keep = _backup(repo, stages, "db", {"db": b"keep"})
    gone = _backup(repo, stages, "db", {"db": b"gone"})
    repo.forget([layout.manifest_key("db", gone.id)])
    assert [m.id for m in repo.manifests("db")] == [keep.id]  # uncommitted as soon as its manifest goes
    repo.forget([a.key for a in gone.artifacts])
    assert set(repo.inventory().backups) == {("db", keep.id)}
    with pytest.raises(ObjectNotFound):
        next(repo.read_stored(gone.artifacts[0].key))
    stored = b"".join(repo.read_stored(keep.artifacts[0].key))
    assert hashlib.sha256(stored).hexdigest() == keep.artifacts[0].sha256


# -- locks -----------------------------------------------------------------------------------


def test_locks_are_exclusive_listed_and_removable(repo):
    with repo.lock("backup-db", "backup"):
        assert repo.lock_held("backup-db")
        with pytest.raises(LockHeld), repo.lock("backup-db", "backup"):
            pass
        assert [h["name"] for h in repo.locks()] == ["backup-db"]
    assert not repo.lock_held("backup-db") and repo.locks() == []
    with repo.lock("prune", "prune", ttl=60):
        assert repo.unlock("prune")  # `posterity unlock` of a lock left behind
        assert not repo.lock_held("prune")
    assert not repo.unlock("prune")


# -- points, drills, audit -------------------------------------------------------------------


def test_points_are_written_once_and_read_back(repo, stages):
    m = _backup(repo, stages, "db", {"db": b"x"})
    point = Point(new_backup_id(), m.started_at, m.finished_at, "host", __version__,
                  [PointMember("db", m.kind, m.id, layout.manifest_key("db", m.id))], tags=["nightly"])
    repo.write_point(point)
    with pytest.raises(ObjectExists):
        repo.write_point(Point(point.id, point.started_at, point.finished_at, "other-host", __version__, []))
    assert repo.has_point(point.id) and not repo.has_point(new_backup_id())
    assert repo.point_keys() == [layout.point_key(point.id)]
    assert repo.read_point(point.key) == point


def test_a_malformed_point_is_named(repo):
    key = layout.point_key(new_backup_id())
    repo.store.put(key, b'{"format": 99}')
    with pytest.raises(ManifestInvalid, match=key):
        repo.read_point(key)


def test_drill_reports_oldest_first_and_the_last_one(repo):
    first, second = new_backup_id(datetime(2024, 1, 1, tzinfo=UTC)), new_backup_id(datetime(2024, 2, 1, tzinfo=UTC))
    for did in (second, first):
        key = repo.write_drill("db", did, json.dumps({"id": did}).encode())
        assert key == layout.drill_key("db", did)
    repo.write_drill("files", first, b'{"id": "f"}')
    assert [r["id"] for r in repo.drill_reports("db")] == [first, second]
    assert [r["id"] for r in repo.drill_reports("db", last=True)] == [second]
    assert len(repo.drill_reports()) == 3 and repo.drill_reports("none") == []
    with pytest.raises(ObjectExists):
        repo.write_drill("db", first, b"{}")


def test_audit_records_are_written_and_found_by_day_and_operation(repo):
    repo.audit("backup", "succeeded", {"source": "db"})
    repo.audit("prune", "failed", {"error": "x"})
    keys = repo.audit_keys()
    assert len(keys) == 2 and all(k.startswith(layout.AUDIT_PREFIX) for k in keys)
    records = repo.audit_records(repo.audit_keys(op="prune"))
    assert [(r["operation"], r["result"], r["error"]) for r in records] == [("prune", "failed", "x")]
    assert records[0]["key"] in keys
    assert repo.audit_keys(first_day="2999-01-01") == []


# -- the WAL archive -------------------------------------------------------------------------


def test_wal_push_fetch_list_byte_for_byte(repo, stages, key, tmp_path):
    archive = repo.wal("pitr")
    seg = wal.segment_name(1, 3, SEG)
    data = os.urandom(4096) + bytes(SEG - 4096)
    (tmp_path / seg).write_bytes(data)
    assert archive.push(tmp_path / seg, stages, sysid="42").status == "stored"
    assert archive.push(tmp_path / seg, stages).status == "already archived"  # PostgreSQL's retry
    dest = tmp_path / "restored"
    assert archive.fetch(seg, dest, [key]) == SEG
    assert dest.read_bytes() == data
    raw, record = archive.fetch_bytes(seg, [key])
    assert raw == data and record["system_identifier"] == "42"
    listing = archive.listing()
    assert listing.has(seg) and listing.timelines() == [1]
    assert archive.complete(seg)
    assert repo.wal("other").listing().files == {}  # one archive per source
    with pytest.raises(WalNotArchived):
        archive.fetch(wal.segment_name(1, 4, SEG), tmp_path / "nothing", [key])
    assert not (tmp_path / "nothing").exists()


def test_wal_other_content_under_an_archived_name_is_refused(repo, stages, key, tmp_path):
    archive = repo.wal("pitr")
    seg = wal.segment_name(1, 5, SEG)
    archive.push_bytes(seg, b"first cluster", stages)
    with pytest.raises(WalConflict):
        archive.push_bytes(seg, b"second cluster", stages)
    assert archive.fetch_bytes(seg, [key])[0] == b"first cluster"


def test_wal_snapshots_are_forgotten_but_nothing_else(repo, stages, key):
    archive = repo.wal("pitr")
    seg = wal.segment_name(1, 6, SEG)
    snap = wal.stream_name(seg, 5)
    archive.push_bytes(snap, b"abcde", stages)
    assert archive.listing().has(snap)
    archive.forget(snap)
    assert not archive.listing().has(snap) and archive.listing().files == {}
    archive.push_bytes(seg, b"whole", stages)
    with pytest.raises(ValueError):
        archive.forget(seg)  # a whole segment is removed by prune alone
    assert archive.fetch_bytes(seg, [key])[0] == b"whole"


def test_wal_history_is_read_through_the_archive(repo, stages, key):
    archive = repo.wal("pitr")
    archive.push_bytes("00000002.history", b"1\t0/3000158\tno recovery target specified\n", stages)
    assert archive.read_history(2, [key]) == [wal.TimelineEntry(1, 0, 0x3000158), wal.TimelineEntry(2, 0x3000158, None)]
    assert archive.read_history(1, []) == [wal.TimelineEntry(1, 0, None)]
