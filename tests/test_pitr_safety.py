"""What a point-in-time restore may do to what already exists (issue 12, items 7–10).

The session's archiving cluster, archiving into this module's repository: row 1, a base
backup, row 2, both archived.
Every refusal leaves the target exactly as it was; a restored copy never archives into
the source it came from unless ``--archive-mode preserve`` asks for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from tests.support.pitr import (
    AS_ROOT,
    Env,
    archiving_env,
    insert_row,
    restore,
    rows_of,
    stop_restored,
    wait_archived,
)

from posterity.errors import RestoreTargetError
from posterity.pgcluster import TempCluster, free_port
from posterity.repository import walarchive
from posterity.sources.postgres.pitr_target import check_directory


@pytest.fixture(scope="module")
def env(archiving_cluster: TempCluster):
    with archiving_env("posterity-pitrsafe-", archiving_cluster) as e:
        assert e.cluster is not None
        insert_row(e.cluster, 1)
        wait_archived(e.cluster)
        e.base_id = json.loads(e.ok("--json", "backup", "pitr").stdout)["backups"][0]["id"]
        insert_row(e.cluster, 2)
        wait_archived(e.cluster)
        yield e


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"") for p in sorted(path.rglob("*"))}


def fake_data_dir(path: Path, pid: int | None) -> Path:
    path.mkdir(parents=True)
    (path / "PG_VERSION").write_text("15\n")
    (path / "global").mkdir()
    (path / "global" / "pg_control").write_bytes(b"old control file")
    if pid is not None:
        (path / "postmaster.pid").write_text(f"{pid}\n{path}\n")
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- item 7: --force -----------------------------------------------------------------------


def test_force_refuses_the_parent_of_a_running_data_directory(env: Env) -> None:
    srv = env.work / "srv-pg"
    fake_data_dir(srv / "data", os.getpid())  # a live pid: "running"
    before = tree(srv)
    proc = restore(env, srv, "latest", "--force")
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert "not a PostgreSQL data directory" in proc.stdout + proc.stderr
    assert tree(srv) == before


def test_force_refuses_a_folder_holding_a_repository(env: Env) -> None:
    parent = env.work / "repo-parent"
    (parent / "backups" / "db").mkdir(parents=True)
    (parent / "wal").mkdir()
    (parent / "posterity.json").write_text('{"format": 1}')
    (parent / "backups" / "db" / "manifest.json").write_text("{}")
    before = tree(parent)
    proc = restore(env, parent, "latest", "--force")
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert tree(parent) == before
    assert not list(env.work.glob(".posterity-pitr-*"))


def test_force_never_clears_a_folder_the_configuration_uses(tmp_path: Path) -> None:
    data = fake_data_dir(tmp_path / "data", None)
    (data / "repo").mkdir()
    with pytest.raises(RestoreTargetError, match="which this configuration uses"):
        check_directory(data, True, [data / "repo"])
    # The configured repository's parent, too — even though it is no data directory.
    with pytest.raises(RestoreTargetError, match="which this configuration uses"):
        check_directory(tmp_path, True, [data / "repo"])


def test_force_replaces_a_stopped_data_directory_only_after_success(env: Env) -> None:
    dest = fake_data_dir(env.work / "restored-force", dead_pid())
    (dest / "old-only.txt").write_text("old")
    before = tree(dest)
    # A damaged base backup fails after the old contents were moved aside: they come back whole.
    manifest = json.loads(env.ok("--json", "show", env.base_id).stdout)
    payload = env.repo / manifest["artifacts"][0]["key"]
    good = payload.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    payload.write_bytes(bytes(bad))
    try:
        failed = restore(env, dest, "latest", "--force")
    finally:
        payload.write_bytes(good)
    assert failed.returncode != 0, failed.stdout
    assert tree(dest) == before
    assert not list(env.work.glob(".restored-force.posterity-replaced-*"))

    earlier = env.work / ".restored-force.posterity-replaced-20200101T000000-1"  # a killed --force restore's
    earlier.mkdir()
    proc = restore(env, dest, "latest", "--force")
    assert proc.returncode == 0, proc.stderr
    assert earlier.is_dir() and any(str(earlier) in n for n in json.loads(proc.stdout)["notes"])
    earlier.rmdir()
    assert not (dest / "old-only.txt").exists()
    assert (dest / "global" / "pg_control").read_bytes() != b"old control file"
    assert (dest / "recovery.signal").exists()
    assert not list(env.work.glob(".restored-force.posterity-replaced-*")), "the old contents were not removed"


# -- item 10: staging left by a killed restore -----------------------------------------------


def test_staging_left_by_a_killed_restore_is_removed_and_private(env: Env) -> None:
    stale = env.work / f".posterity-pitr-{dead_pid()}-x1y2"
    stale.mkdir()
    (stale / "000000010000000000000001").write_bytes(b"decrypted wal")
    live = env.work / f".posterity-pitr-{os.getpid()}-keep"  # a restore still running: left alone
    live.mkdir()
    dest = env.work / "restored-after-kill"
    try:
        proc = restore(env, dest, "latest")
        assert proc.returncode == 0, proc.stderr
        assert not stale.exists()
        assert live.exists()
        assert any("did not finish" in n for n in json.loads(proc.stdout)["notes"])
    finally:
        live.rmdir()
    from posterity.sources.postgres.pitr_target import make_staging

    made = make_staging(env.work)
    try:
        assert made.stat().st_mode & 0o777 == 0o700 and str(os.getpid()) in made.name
    finally:
        made.rmdir()


# -- item 8: every identity source is checked as the PostgreSQL user ---------------------------


@pytest.mark.skipif(not AS_ROOT, reason="restore_command runs as the same user when not root")
def test_config_identity_unreadable_by_postgres_is_refused_before_writing(env: Env) -> None:
    private = env.work / "private-key.txt"
    shutil.copy(env.key, private)
    os.chown(private, 0, 0)
    private.chmod(0o600)
    text = env.config.read_text()
    env.config.write_text(text.replace(f'identity_file = "{env.key}"', f'identity_file = "{private}"'))
    dest = env.work / "never-identity"
    try:
        proc = restore(env, dest, "latest")
    finally:
        env.config.write_text(text)
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert "cannot read" in proc.stdout and str(private) in proc.stdout
    assert not dest.exists()


# -- item 9: a restored copy does not archive into production ---------------------------------


def test_a_promoted_copy_does_not_archive_into_the_source(env: Env) -> None:
    dest = env.work / "restored-promoted"
    port = free_port()
    proc = restore(env, dest, "latest", "--start", "--port", str(port))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    try:
        assert result["state"] == "promoted" and result["timeline"] == 2
        assert result["settings"]["archive_mode"] == "off"
        assert rows_of(port) == [1, 2]
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            assert conn.execute("show archive_mode").fetchone() == ("off",)
            conn.execute("insert into t(id) values (99)")
            conn.execute("select pg_switch_wal()")
        time.sleep(1.5)
    finally:
        stop_restored(dest)
    listing = walarchive.WalArchive(env.store, "pitr").listing()
    assert not listing.has("00000002.history")
    assert not [f for f in listing.complete("segment") if f.timeline == 2]


def test_a_branch_only_a_copy_made_is_not_followed_by_default(env: Env) -> None:
    """Runs last: it leaves a timeline-2 branch in the archive, as a copy with preserve would."""
    copy = env.work / "restored-preserve"
    port = free_port()
    proc = restore(env, copy, "latest", "--archive-mode", "preserve", "--start", "--port", str(port))
    assert proc.returncode == 0, proc.stderr
    assert "archive_mode" not in json.loads(proc.stdout)["settings"]
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("insert into t(id) values (4)")
            seg = conn.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
            deadline = time.monotonic() + 60
            while conn.execute("select coalesce(last_archived_wal, '') from pg_stat_archiver").fetchone()[0] < seg:  # type: ignore[index]
                assert time.monotonic() < deadline, "the copy did not archive"
                time.sleep(0.1)
    finally:
        stop_restored(copy)
    assert walarchive.WalArchive(env.store, "pitr").listing().has("00000002.history")
    status = json.loads(env.ok("--json", "wal", "status", "--source", "pitr").stdout)
    tls = {t["timeline"]: t for t in status["timelines"]}
    assert tls[1]["base_backups"] == 1 and tls[2]["base_backups"] == 0
    assert tls[2]["branched_from"] == 1 and "/" in tls[2]["branched_at"]
    human = env.ok("wal", "status", "--source", "pitr").stdout
    assert "timeline 2:" in human and "branched from timeline 1 at" in human

    # Production's own history (timeline 1) by default, and the branch is named.
    dest, p1 = env.work / "restored-default-tl", free_port()
    proc = restore(env, dest, "latest", "--start", "--port", str(p1))
    try:
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["recovery_timeline"] == 1 and rows_of(p1) == [1, 2]
        assert any("timeline 2 (branched from timeline 1" in n and "--target-timeline 2" in n for n in out["notes"])
    finally:
        stop_restored(dest)
    # Asked for explicitly, the branch is followed.
    dest2, p2 = env.work / "restored-latest-tl", free_port()
    proc = restore(env, dest2, "latest", "--target-timeline", "latest", "--start", "--port", str(p2))
    try:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["recovery_timeline"] == 2 and rows_of(p2) == [1, 2, 4]
    finally:
        stop_restored(dest2)
