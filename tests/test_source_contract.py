"""The Source contract, run over every kind of source (issue 15, item 2).

Every kind — postgres (one archive, and the split layout dumped in parallel), postgres-physical
(base backup + archived WAL), meilisearch (the in-repo test server) and files — honours the
same promises, proved through the command line with real systems:

* backup → destroy → restore gives back the data itself (rows and checksums, documents and
  settings, file bytes, modes and links), not just exit 0;
* a dump that fails midway exits non-zero with the cause, commits nothing: no manifest, no
  new entry in ``list``, no payload left in the repository, nothing for ``prune`` to find;
* the by-hand commands ``posterity show`` prints recover the data with the standard tools
  (age, zstd, pg_restore, tar, jq and curl) and no Posterity;
* ``verify --read-data`` passes on the fresh backup, reading every artifact for its content,
  and, after one stored byte is flipped, fails naming the damaged object;
* a restore that reads the flipped byte fails naming the object and leaves nothing behind
  where it was restoring (no database, no files, no index, an empty data directory).

The per-kind parts (known data, destroy, restore options, a real failure midway, the by-hand
run) live in tests/support/kinds.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.kinds import ADAPTERS, READ_FAILS, Kind, Store

KINDS = list(ADAPTERS)


@pytest.fixture
def store() -> str:
    """Where the repository lives: "file" (a local folder) unless a test parametrizes it."""
    return "file"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, tmp_path: Path, store: str) -> Iterator[Kind]:
    spec: Store | None = None
    proxy = None
    if store == "r2" and request.param == "postgres-physical":
        # The adapter supports it (and passed), but it costs ~9 s on the shared 2 cores; the
        # whole physical cycle on S3 is tests/test_pitr.py::test_whole_cycle_on_an_s3_repository.
        pytest.skip("postgres-physical on S3 is test_pitr.py::test_whole_cycle_on_an_s3_repository")
    if store == "r2":  # SeaweedFS behind the R2-rules proxy (tests/support/r2proxy.py)
        s3, bucket, proxy = (request.getfixturevalue(f) for f in ("s3_server", "s3_bucket", "r2_proxy"))
        # Literal test credentials: archive_command and restore_command (run by PostgreSQL as
        # its OS user) do not get this process's environment.
        spec = (f"s3://{bucket}/contract", {"endpoint": proxy.endpoint, "region": s3.region,
                                            "access_key_id": s3.access_key, "secret_access_key": s3.secret_key})
    k = ADAPTERS[request.param](tmp_path, request, spec)
    try:
        yield k
        if proxy is not None:
            assert proxy.violations == [], proxy.violations
    finally:
        k.close()


def backup(k: Kind) -> dict:
    """One backup of the kind's source; its manifest as ``show --json`` prints it."""
    out = k.ok("--json", "backup", k.source).json()["backups"][0]
    return k.ok("--json", "show", out["id"]).json()


def payload_files(k: Kind) -> set[str]:
    """Every object under backups/ in the repository (payloads and manifests)."""
    top = k.repo / "backups"
    return {str(f.relative_to(k.repo)) for f in top.rglob("*") if f.is_file()} if top.exists() else set()


def flip_a_byte(k: Kind, key: str) -> None:
    """One bit of the stored object ``key`` flipped, in the middle (payloads are read-only)."""
    obj = k.repo / key
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))


@pytest.mark.parametrize("store", ["file", "r2"])
def test_backup_destroy_restore_gives_back_the_data(kind: Kind) -> None:
    original = kind.data()
    manifest = backup(kind)
    assert manifest["artifacts"] and all(a["size"] > 0 for a in manifest["artifacts"])
    kind.destroy()  # each adapter asserts the data is gone
    kind.ok("restore", kind.source, manifest["id"], *kind.restore_args())
    assert kind.restored() == original


def test_a_dump_failing_midway_commits_nothing(kind: Kind) -> None:
    before = kind.data()
    good = backup(kind)
    listed = kind.ok("--json", "list").json()
    stored = payload_files(kind)
    with kind.dump_fails_midway():
        failed = kind.run("backup", kind.source)
    assert failed.code == kind.failure_code, failed.text
    assert "error: unexpected" not in failed.text, failed.text  # what cli/main.py says of an unnamed failure
    for words in kind.failure_words:
        assert words in failed.err, failed.text
    assert "nothing was committed" in failed.err.lower(), failed.text  # every kind says it (errors.say_nothing_committed)
    assert kind.ok("--json", "list").json() == listed
    assert [b["id"] for b in listed if b["source"] == kind.source] == [good["id"]]
    assert payload_files(kind) == stored, "the failed backup left objects behind"
    assert not list((kind.repo / "locks").glob("*")), "the failed backup left its lock"
    staging = kind.p.root / "staging"
    assert not staging.exists() or not any(staging.rglob("*")), "the failed backup left staged files"
    report = kind.ok("--json", "prune").json()
    assert report["orphans"] == [], report
    assert payload_files(kind) == stored
    assert kind.data() == before  # the failed backup changed nothing in the source either


def test_show_by_hand_commands_recover_the_data_with_standard_tools(kind: Kind, tmp_path: Path) -> None:
    for tool in ("age", "zstd", "bash"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/bootstrap installs age and zstd)")
    original = kind.data()
    manifest = backup(kind)
    commands = manifest["restore_by_hand"]
    assert commands, manifest
    shown = kind.ok("show", manifest["id"]).out
    for c in commands:
        assert c in shown, f"show does not print {c!r}:\n{shown}"
    work = tmp_path / "by-hand-work"
    work.mkdir()
    assert kind.by_hand(commands, work) == original


def test_verify_passes_then_names_the_object_with_a_flipped_byte(kind: Kind) -> None:
    manifest = backup(kind)
    r = kind.ok("--json", "verify", "--read-data", "--source", kind.source)
    checked = r.json()["checked"]
    # Every artifact is read for what its kind says it is (pg_restore, tar listing, JSON, …).
    assert all(checked.get(a["key"], {}).get("content") for a in manifest["artifacts"]), checked
    art = max(manifest["artifacts"], key=lambda a: a["size"])
    flip_a_byte(kind, art["key"])
    r = kind.run("verify", "--read-data", "--source", kind.source)
    assert r.code == 6, r.text
    assert f"{art['key']} does not match its manifest" in r.err, r.text


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    k = ADAPTERS["files"](tmp_path, request, None)
    try:
        with k.dump_fails_midway():
            failed = k.run("backup", k.source)
        assert failed.code == 5, failed.text
        # The file as it is on disk and as it is stored, what happened, and what to do.
        stored = READ_FAILS.lstrip("/")
        assert f"Reading {READ_FAILS} (stored as {stored}) failed at byte 0 of " in failed.err, failed.text
        assert "Invalid argument" in failed.err and "nothing was committed" in failed.err, failed.text
        assert "hint:" in failed.err and "exclude" in failed.err, failed.text
        assert "Writing the tar failed" not in failed.err, failed.text
        assert k.ok("--json", "list").json() == []
    finally:
        k.close()


def test_restore_of_a_flipped_byte_fails_naming_it_and_leaves_nothing(kind: Kind) -> None:
    manifest = backup(kind)
    kind.destroy()
    art = kind.restore_reads(manifest)
    flip_a_byte(kind, art["key"])
    r = kind.run("restore", kind.source, manifest["id"], *kind.restore_args())
    assert r.code == 6, r.text
    assert f"{art['key']} does not match its manifest" in r.err, r.text
    kind.assert_nothing_restored()
