"""Damaged repositories: verify and restore find the damage, name the object, and the
other backups stay restorable.

Every test starts from its own copy of one repository holding two committed backups of a
sample database (``golden``), damages the newest backup in one way, and checks:
the user's message and exit code, that the damage is named, that the restore target is
not left behind, and that the older backup still verifies and restores exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from tests.reliability.harness import Golden, Setup, database_exists, unique

from posterity.demo import fingerprint
from posterity.pipeline import Stages, encode


def payload(s: Setup, backup_id: str, suffix: str = ".pgdump.zst.age") -> Path:
    folder = Path(s.repo_url.removeprefix("file://")) / "backups" / "db" / backup_id
    (found,) = [p for p in folder.iterdir() if p.name.endswith(suffix)]
    return found


def manifest_path(s: Setup, backup_id: str) -> Path:
    return Path(s.repo_url.removeprefix("file://")) / "backups" / "db" / backup_id / "manifest.json"


def key_of(path: Path, s: Setup) -> str:
    return str(path.relative_to(Path(s.repo_url.removeprefix("file://"))))


def assert_older_backup_intact(s: Setup, golden: Golden, restore: bool = False) -> None:
    """Nothing committed is lost: the untouched backup reads back whole (sha256, age, zstd,
    pg_restore to the last block) and, with ``restore``, restores to the exact data."""
    older = golden.ids[0]
    r = s.run("verify", older, "--read-data")
    assert r.code == 0 and "no problems found" in r.out, r
    if not restore:
        return
    target = unique("intact")
    r = s.run("restore", "db", older, "--to-database", target)
    assert r.code == 0, r
    try:
        assert fingerprint(golden.cluster.dsn(target)) == golden.fingerprint
    finally:
        golden.cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def restore_fails_naming(
    s: Setup, golden: Golden, key: str, code: int, *words: str, created: bool = True
) -> None:
    """The restore fails naming the object; ``created``: it had created the target database
    (and says it dropped it); otherwise it failed before creating anything."""
    target = unique("damaged")
    r = s.run("restore", "db", golden.ids[1], "--to-database", target)
    assert r.code == code, r
    assert key in r.err, r
    for w in words:
        assert w in r.err, r
    if created:
        assert f"The partly restored database {target!r} was dropped" in r.err, r
    else:
        assert "Nothing was changed" in r.err, r
    assert not database_exists(golden.cluster, target)


def test_flipped_byte_is_named_by_verify_read_data_and_restore(golden: Golden, tmp_path):
    s = golden.clone(tmp_path)
    p = payload(s, golden.ids[1])
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    key = key_of(p, s)

    r = s.run("verify")  # structure only: the size is right, so this cannot see it
    assert r.code == 0, r
    r = s.run("verify", "--read-data")
    assert r.code == 6, r
    assert f"BAD checksum: {key} does not match its manifest" in r.err, r
    assert "verify found 1 problem(s)" in r.err and "hint:" in r.err, r
    restore_fails_naming(s, golden, key, 6, "does not match its manifest")
    assert_older_backup_intact(s, golden)


def test_truncated_payload_is_named_by_verify_and_restore(golden: Golden, tmp_path):
    s = golden.clone(tmp_path)
    p = payload(s, golden.ids[1])
    full = p.stat().st_size
    p.write_bytes(p.read_bytes()[: full - 1000])
    key = key_of(p, s)

    r = s.run("verify")
    assert r.code == 6, r
    assert f"BAD size: {key} has {full - 1000} bytes, its manifest says {full}" in r.err, r
    restore_fails_naming(s, golden, key, 6, f"{key} is truncated: {full - 1000} of {full} bytes")
    assert_older_backup_intact(s, golden)


def test_deleted_payload_is_named_by_verify_and_restore(golden: Golden, tmp_path):
    s = golden.clone(tmp_path)
    p = payload(s, golden.ids[1])
    p.unlink()
    key = key_of(p, s)

    r = s.run("verify", "--json")
    assert r.code == 6, r
    (finding,) = r.json()["findings"]
    assert (
        finding["key"] == key
        and finding["problem"] == "missing"
        and finding["backup"] == golden.ids[1]
    )
    r = s.run("verify", "--read-data")
    assert (
        r.code == 6
        and f"BAD missing: {key} is missing (named by backup db/{golden.ids[1]})" in r.err
    ), r
    # The archive's header is read before the database is created (its encoding and locale
    # decide how to create it), so a missing object stops the restore before anything exists.
    restore_fails_naming(s, golden, key, 4, f"Object {key} does not exist", created=False)
    assert_older_backup_intact(s, golden, restore=True)


def test_manifest_edited_by_hand_is_named(golden: Golden, tmp_path):
    s = golden.clone(tmp_path)
    m = manifest_path(s, golden.ids[1])
    doc = json.loads(m.read_text())
    art = next(a for a in doc["artifacts"] if a["kind"] == "pg_dump-custom")
    art["sha256"] = "0" * 64
    m.write_text(json.dumps(doc, indent=2))

    r = s.run("verify", golden.ids[1], "--read-data")
    assert r.code == 6, r
    assert f"BAD checksum: {art['key']} does not match its manifest: sha256" in r.err, r
    assert "!= 0000000000000000" in r.err, r
    # This host cached the manifest it committed, so its restores use the true record and
    # succeed; another host (empty cache) reads the edited one and refuses, naming the object.
    (s.root / "state").rename(s.root / "state.moved")
    restore_fails_naming(s, golden, art["key"], 6, "does not match its manifest")
    assert_older_backup_intact(s, golden)


def test_manifest_that_is_not_json_is_named_and_hides_nothing_else(golden: Golden, tmp_path):
    s = golden.clone(tmp_path)
    m = manifest_path(s, golden.ids[1])
    m.write_text('{"format": 1, "id": "trunc')
    key = key_of(m, s)
    (s.root / "state").rename(s.root / "state.moved")  # as seen from a host without the cache

    r = s.run("verify")
    assert r.code == 6, r
    assert f"BAD manifest: The manifest {key} is not valid JSON" in r.err, r
    r = s.run("list", "--json")
    assert r.code == 0, r
    assert [b["id"] for b in r.json()] == [golden.ids[0]]
    assert f"Skipping an unreadable manifest: The manifest {key} is not valid JSON" in r.err, r
    r = s.run("restore", "db", golden.ids[1], "--to-database", unique("x"))
    assert r.code == 3 and f"The manifest {key} is not valid JSON" in r.err, r
    assert_older_backup_intact(s, golden)


def _replace_payload(s: Setup, golden: Golden, raw: bytes, *, cut_zstd: int = 0) -> str:
    """Re-encode the newest dump payload from ``raw`` and make its manifest agree exactly
    (sha256, sizes), so only the content checks can object."""
    import pyrage
    import zstandard

    p = payload(s, golden.ids[1])
    if cut_zstd:
        z = zstandard.ZstdCompressor(write_checksum=True).compress(raw)[:-cut_zstd]
        stored = pyrage.encrypt(z, [pyrage.x25519.Recipient.from_str(s.recipient)])
    else:
        stored = b"".join(encode(io.BytesIO(raw), Stages((s.recipient,))))
    p.write_bytes(stored)
    m = manifest_path(s, golden.ids[1])
    doc = json.loads(m.read_text())
    art = next(a for a in doc["artifacts"] if a["kind"] == "pg_dump-custom")
    art.update(sha256=hashlib.sha256(stored).hexdigest(), size=len(stored), raw_size=len(raw))
    m.write_text(json.dumps(doc, indent=2))
    (s.root / "state").rename(s.root / "state.moved")
    return art["key"]


def _decoded_dump(s: Setup, golden: Golden) -> bytes:
    ctx = s.context()
    m = ctx.repo.find(golden.ids[1], "db")
    out = io.BytesIO()
    ctx.repo.read_artifact(m.artifacts_of_kind("pg_dump-custom")[0], out, ctx.identities())
    return out.getvalue()


def test_payload_whose_compression_never_finished_is_caught(golden: Golden, tmp_path):
    """Regression: zstd's stream_writer accepted a stream ending inside a frame."""
    s = golden.clone(tmp_path)
    raw = _decoded_dump(s, golden)
    key = _replace_payload(s, golden, raw, cut_zstd=64)
    r = s.run("verify", "--read-data")
    assert r.code == 6, r
    assert (
        f"BAD decode: {key} decrypted but does not decompress: the data ends inside a zstd frame"
        in r.err
    ), r


def test_archive_cut_in_half_is_caught_by_the_pg_restore_check(golden: Golden, tmp_path):
    """sha256, age and zstd are all consistent; only reading the archive itself finds it."""
    s = golden.clone(tmp_path)
    raw = _decoded_dump(s, golden)
    key = _replace_payload(s, golden, raw[: len(raw) // 2])
    r = s.run("verify", "--read-data", "--json")
    assert r.code == 6, r
    (finding,) = r.json()["findings"]
    assert finding["key"] == key and finding["problem"] == "content"
    assert "pg_restore cannot read the archive" in finding["message"]
    assert_older_backup_intact(s, golden)


def test_read_data_subset_reads_only_a_share(golden: Golden, tmp_path):
    s = golden.clone(tmp_path)
    r = s.run("verify", "--read-data-subset", "25%", "--json")
    assert r.code == 0, r
    assert r.json()["objects"] == 4 and r.json()["objects_read"] == 1
    r = s.run("verify", "--read-data-subset", "250%")
    assert r.code == 2 and "is not a share of the objects" in r.err, r


@pytest.mark.parametrize("how", ["missing", "wrong"])
def test_identity_problems_are_refused_clearly(golden: Golden, tmp_path, how):
    s = golden.clone(tmp_path)
    if how == "missing":
        s.identity.unlink()
        expected = f"The identity file {s.identity} does not exist."
        verify_code = restore_code = 7
    else:
        s.identity.unlink()
        from posterity.pipeline import generate_identity

        generate_identity(s.identity)
        expected = "is encrypted to the identity given"
        verify_code = restore_code = 7

    r = s.run("verify")  # the structure check needs no key
    assert r.code == 0 and "no problems found" in r.out, r
    r = s.run("verify", "--read-data")
    assert r.code == verify_code and expected in r.err and "hint:" in r.err, r
    target = unique("nokey")
    r = s.run("restore", "db", "latest", "--to-database", target)
    assert r.code == restore_code, r
    assert expected in r.err and "hint:" in r.err, r
    assert not database_exists(golden.cluster, target)
    r = s.run("drill")
    assert r.code == 7 and expected in r.err, r
