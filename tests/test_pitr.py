"""Point-in-time recovery end to end: a real PostgreSQL 15 archiving through
``posterity wal push``, base backups, and restores that start PostgreSQL and count rows.

The session's archiving cluster archiving into this module's file:// repository (the
scenario below), and the S3 test server for the push/fetch contract. Rows 1, 2, 3 are
committed at known times with a WAL switch after each, so each lands in its own archived
segment:

    row 1 ─ base backup ─ row 2 ─ MID ─ row 3          (timeline 1)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from tests.support.pitr import (
    AS_ROOT,
    Env,
    archiving_env,
    chown_owner,
    insert_row,
    pg_owner,
    restore,
    rows_of,
    stop_restored,
    wait_archived,
)
from tests.support.reap import remove_later

from posterity.pgcluster import TempCluster, free_port
from posterity.pipeline import Stages, generate_identity, load_identities
from posterity.repository import walarchive
from posterity.repository import walnames as wal
from posterity.storage import open_store


@pytest.fixture(scope="module")
def env(archiving_cluster: TempCluster):
    with archiving_env("posterity-pitr-", archiving_cluster) as e:
        cluster = e.cluster
        assert cluster is not None
        e.rows[1] = insert_row(cluster, 1)
        wait_archived(cluster)
        out = json.loads(e.ok("--json", "backup", "pitr").stdout)
        e.base_id = out["backups"][0]["id"]
        time.sleep(0.6)
        e.rows[2] = insert_row(cluster, 2)
        e.lsn2 = cluster.psql("select pg_current_wal_insert_lsn()").strip()
        wait_archived(cluster)
        time.sleep(0.6)
        e.mid = datetime.now(UTC)
        time.sleep(0.6)
        e.rows[3] = insert_row(cluster, 3)
        wait_archived(cluster)
        yield e


# -- base backup --------------------------------------------------------------------------


def test_base_backup_records_what_recovery_needs(env: Env) -> None:
    manifest = json.loads(env.ok("--json", "show", env.base_id).stdout)
    facts = manifest["facts"]
    assert env.cluster is not None
    sysid = env.cluster.psql("select system_identifier from pg_control_system()").strip()
    assert facts["system_identifier"] == sysid
    assert facts["timeline"] == 1 and facts["stop_timeline"] == 1
    assert wal.parse_lsn(facts["start_lsn"]) <= wal.parse_lsn(facts["stop_lsn"])
    assert facts["wal_start_segment"] == wal.segment_name(1, wal.parse_lsn(facts["start_lsn"]) // wal.DEFAULT_SEGMENT_SIZE)
    assert facts["wal_start_segment"] <= facts["wal_stop_segment"]
    assert facts["server_version_num"] // 10000 == 15
    assert "START WAL LOCATION" in facts["backup_label"]
    # The stored payload is age(zstd(tar)) with PostgreSQL's backup_manifest inside: readable by hand.
    art = manifest["artifacts"][0]
    age = subprocess.Popen(["age", "-d", "-i", str(env.key), str(env.repo / art["key"])], stdout=subprocess.PIPE)
    zstd = subprocess.Popen(["zstd", "-d", "-c"], stdin=age.stdout, stdout=subprocess.PIPE)
    assert age.stdout is not None and zstd.stdout is not None
    age.stdout.close()
    with tarfile.open(fileobj=zstd.stdout, mode="r|") as tf:
        names = {m.name for m in tf}
    assert zstd.wait() == 0 and age.wait() == 0
    assert {"backup_label", "backup_manifest", "global/pg_control", "PG_VERSION"} <= names
    # Every segment the backup needs was archived before it was committed.
    for name in (facts["wal_start_segment"], facts["wal_stop_segment"]):
        assert env.payload_path(name).is_file()


# -- restores ------------------------------------------------------------------------------


def test_restore_to_a_time_between_t2_and_t3_has_exactly_rows_1_and_2(env: Env) -> None:
    assert env.mid is not None and env.rows[2] < env.mid < env.rows[3]
    dest = env.work / "restored-mid"
    port = free_port()
    proc = restore(env, dest, "latest", "--target-time", env.mid.isoformat(), "--start", "--port", str(port))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    try:
        assert result["backup"] == env.base_id and result["state"] == "paused"
        assert rows_of(port) == [1, 2]
        assert "before commit" in result["stopped"]
        # The last transaction replayed is row 2's commit.
        assert env.rows[2] <= datetime.fromisoformat(result["replay_time"]) < env.mid
        st = os.stat(dest)
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == pg_owner().pw_uid
        assert (dest / "recovery.signal").exists()
    finally:
        stop_restored(dest)


def test_restore_to_an_lsn_from_a_named_backup_and_verify_files(env: Env) -> None:
    """--target-lsn just after row 2's commit, and pg_verifybackup over the extracted files."""
    dest = env.work / "restored-lsn"
    port = free_port()
    proc = restore(env, dest, env.base_id[:12], "--target-lsn", env.lsn2, "--start", "--port", str(port),
                   "--verify-files")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    try:
        assert result["state"] == "paused" and result["backup"] == env.base_id
        assert rows_of(port) == [1, 2]
        assert wal.parse_lsn(result["replay_lsn"]) >= wal.parse_lsn(env.lsn2)
        assert any("pg_verifybackup" in n for n in result["notes"])
    finally:
        stop_restored(dest)


def test_latest_restore_promotes_and_the_new_timeline_is_archived_and_restorable(env: Env) -> None:
    dest = env.work / "restored-latest"
    port = free_port()
    proc = restore(env, dest, "latest", "--archive-mode", "preserve", "--start", "--port", str(port))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    try:
        assert result["state"] == "promoted" and result["recovery_timeline"] == 1 and result["timeline"] == 2
        assert rows_of(port) == [1, 2, 3]
        assert not (dest / "posterity_wal_spool").exists()  # recovery_end_command removed it
        # Write on the new timeline; the restored server archives into the same source.
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("insert into t(id) values (4)")
            seg = conn.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
            deadline = time.monotonic() + 60
            while conn.execute("select coalesce(last_archived_wal, '') from pg_stat_archiver").fetchone()[0] < seg:  # type: ignore[index]
                assert time.monotonic() < deadline, "the restored server did not archive"
                time.sleep(0.1)
    finally:
        stop_restored(dest)
    listing = walarchive.WalArchive(env.store, "pitr").listing()
    assert listing.has("00000002.history") and listing.has(seg) and seg.startswith("00000002")
    # Timeline 1 was not clobbered: its segments are all still there, beside timeline 2's.
    assert any(f.timeline == 1 for f in listing.complete("segment"))
    # --target-timeline latest follows timeline 2 (row 4); --target-timeline 1 stays on the old one.
    again, old = env.work / "restored-tl2", env.work / "restored-tl1"
    p2, p1 = free_port(), free_port()
    r2 = restore(env, again, "latest", "--target-timeline", "latest", "--start", "--port", str(p2))
    try:
        assert r2.returncode == 0, r2.stderr
        out = json.loads(r2.stdout)
        assert (out["recovery_timeline"], out["timeline"]) == (2, 3) and rows_of(p2) == [1, 2, 3, 4]
    finally:
        stop_restored(again)
    r1 = restore(env, old, "latest", "--target-timeline", "1", "--target-time", env.mid.isoformat(),  # type: ignore[union-attr]
                 "--start", "--port", str(p1))
    try:
        assert r1.returncode == 0, r1.stderr
        assert rows_of(p1) == [1, 2]
    finally:
        stop_restored(old)


# -- refusals before anything is written ---------------------------------------------------


def _refused(env: Env, dest: Path, *args: str, code: int, words: str, command: str | None = None) -> str:
    before = sorted(p.name for p in dest.iterdir()) if dest.exists() else None
    proc = env.run("restore", "pitr", *args, "--to-directory", str(dest), command=command)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert words in proc.stderr, proc.stderr
    after = sorted(p.name for p in dest.iterdir()) if dest.exists() else None
    assert after == before, "the target directory was touched"
    assert not list(dest.parent.glob(".posterity-pitr-*")), "staging was left behind"
    return proc.stderr


def test_target_before_the_oldest_base_backup_is_refused(env: Env) -> None:
    _refused(env, env.work / "never", "latest", "--target-time", env.rows[1].isoformat(), code=3,
             words="before the oldest base backup")


def test_target_after_the_newest_archived_wal_is_refused(env: Env) -> None:
    _refused(env, env.work / "never", "latest", "--target-time", "2999-01-01 00:00:00+00", code=4,
             words="after the newest archived WAL")


def test_missing_segment_is_named_and_shown_by_wal_status(env: Env) -> None:
    manifest = json.loads(env.ok("--json", "show", env.base_id).stdout)
    start = manifest["facts"]["wal_start_segment"]
    victim = wal.segment_name(1, wal.segno_of(start) + 1)
    path = env.payload_path(victim)
    aside = env.work / "aside"
    shutil.move(path, aside)
    try:
        err = _refused(env, env.work / "never", "latest", code=4, words=f"WAL segment {victim}")
        assert "is missing from the archive" in err
        st = env.run("--json", "wal", "status", "--source", "pitr")
        assert st.returncode == 1
        gaps = json.loads(st.stdout)["gaps"]
        assert gaps and gaps[0]["first"] == victim
        # `posterity verify` checks the WAL chain too, and names the missing segment.
        ver = env.run("verify", "--source", "pitr")
        assert ver.returncode == 6 and victim in ver.stdout + ver.stderr, ver
    finally:
        shutil.move(aside, path)
    assert env.run("--json", "wal", "status", "--source", "pitr").returncode == 0
    assert env.run("verify", "--source", "pitr").returncode == 0


def test_corrupted_segment_is_refused_before_writing(env: Env) -> None:
    manifest = json.loads(env.ok("--json", "show", env.base_id).stdout)
    victim = manifest["facts"]["wal_stop_segment"]
    path = env.payload_path(victim)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    try:
        _refused(env, env.work / "never", "latest", code=6, words=wal.payload_key("pitr", victim))
    finally:
        path.write_bytes(original)


def test_wrong_identity_is_refused_before_writing(env: Env) -> None:
    other = env.work / "other-key.txt"
    if not other.exists():
        generate_identity(other)
        chown_owner(other)
    # The identity pre-check every restore runs (issue 15): named as a wrong key (exit 7)
    # before the WAL archive or the base backup is read.
    _refused(env, env.work / "never", "latest", "--identity", str(other), code=7,
             words="is encrypted to the identity given")


@pytest.mark.skipif(not AS_ROOT, reason="restore_command runs as the same user when not root")
def test_drill_recovers_to_the_newest_wal_runs_checks_and_archives_nothing(env: Env) -> None:
    assert env.cluster is not None
    newest = wait_archived(env.cluster)
    env.write_config(env.cluster.dsn(user="replicator"), pitr_extra=(
        '[[sources.pitr.checks]]\nsql = "select count(*) from t where id <= 3"\nmin = 3\nmax = 3\n'
        'description = "rows 1-3 survived"\n'
        '[[sources.pitr.checks]]\nsql = "select count(*) from t"\nmin = 1000\ndescription = "impossible"\n'))
    before = {n for n in walarchive.WalArchive(env.store, "pitr").listing().files}
    try:
        proc = env.run("--json", "drill", "--source", "pitr", timeout=300)
    finally:
        env.write_config(env.cluster.dsn(user="replicator"))
    assert proc.returncode == 10, proc.stdout + proc.stderr  # the impossible check fails the drill
    report = json.loads(proc.stdout)["failures"][0]["report"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["backup files"]["ok"] and "pg_verifybackup" in checks["backup files"]["detail"]
    assert checks["recovery"]["ok"], checks["recovery"]
    assert checks["archiving off in the copy"]["ok"], checks["archiving off in the copy"]
    assert wal.parse_lsn(checks["recovery"]["value"]) >= wal.segno_of(newest) * wal.DEFAULT_SEGMENT_SIZE
    assert checks["rows 1-3 survived"]["ok"] and checks["rows 1-3 survived"]["value"] == 3
    assert not checks["impossible"]["ok"] and "below the minimum" in checks["impossible"]["detail"]
    assert report["restore_seconds"] > 0 and "removed" in report["cleanup"]
    assert not Path(report["target"].split()[-1]).exists()
    time.sleep(1)
    after = {n for n in walarchive.WalArchive(env.store, "pitr").listing().files}
    assert after == before, f"the drill archived {after - before}"


def test_posterity_the_postgres_user_cannot_run_is_refused(env: Env) -> None:
    private = env.work / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(env.command, private / "posterity")
    _refused(env, env.work / "never", "latest", code=9, words="cannot run posterity", command=str(private / "posterity"))


def test_non_empty_or_running_directory_is_refused(env: Env) -> None:
    busy = env.work / "busy"
    busy.mkdir(exist_ok=True)
    (busy / "precious.txt").write_text("keep me")
    _refused(env, busy, "latest", code=9, words="is not empty")
    (busy / "postmaster.pid").write_text(f"{os.getpid()}\n")
    _refused(env, busy, "latest", "--force", code=9, words="in use by a running PostgreSQL")
    assert (busy / "precious.txt").read_text() == "keep me"


# -- wal push / fetch ----------------------------------------------------------------------


def _segment(folder: Path, name: str, seed: bytes) -> Path:
    p = folder / name
    p.write_bytes((seed * (1 << 20))[: 1 << 20] + os.urandom(64))
    return p


@pytest.mark.parametrize("entry", ["cli", "walfast"])
def test_push_twice_same_content_succeeds_different_content_fails(env: Env, tmp_path: Path, entry: str) -> None:
    tli = 0x10 if entry == "cli" else 0x11
    name = wal.segment_name(tli, 7)
    seg = _segment(tmp_path, name, b"first")
    cmd = ([str(env.posterity), "-c", str(env.config), "wal", "push"] if entry == "cli"
           else [sys.executable, "-m", "posterity.cli.walfast", "push", "-c", str(env.config)])

    def push(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, "--source", "other", str(path)], capture_output=True, text=True, check=False)

    first, second = push(seg), push(seg)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert first.stderr == "" and second.stderr == ""
    stored = env.repo / wal.payload_key("other", name)
    stored_bytes = stored.read_bytes()
    impostor = tmp_path / "impostor" / name
    impostor.parent.mkdir()
    original = seg.read_bytes()
    impostor.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # was + b"!": equal 1 time in 256
    third = push(impostor)
    assert third.returncode == 4, third.stderr
    assert "already archived" in third.stderr and "different content" in third.stderr
    assert stored.read_bytes() == stored_bytes
    raw, _ = walarchive.WalArchive(env.store, "other").fetch_bytes(name, load_identities(env.key))
    assert raw == seg.read_bytes()


def test_fetch_restores_exact_bytes_and_is_quiet_for_missing_files(env: Env, tmp_path: Path) -> None:
    name = wal.segment_name(0x12, 3)
    seg = _segment(tmp_path, name, b"fetch me")
    walarchive.WalArchive(env.store, "other").push(seg, Stages((env.recipient,)))
    for cmd in ([str(env.posterity), "-c", str(env.config), "wal", "fetch"],
                [sys.executable, "-m", "posterity.cli.walfast", "fetch", "-c", str(env.config)]):
        dest = tmp_path / "RECOVERYXLOG"
        ok = subprocess.run([*cmd, "--source", "other", name, str(dest)], capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stderr
        assert dest.read_bytes() == seg.read_bytes()
        dest.unlink()
        for missing in (wal.segment_name(0x12, 4), "00000013.history"):
            gone = subprocess.run([*cmd, "--source", "other", missing, str(dest)], capture_output=True, text=True,
                                  check=False)
            assert (gone.returncode, gone.stderr, dest.exists()) == (1, "", False)
    # Archived but damaged: 126, so PostgreSQL stops recovery instead of ending it there.
    path = env.repo / wal.payload_key("other", name)
    path.write_bytes(path.read_bytes()[:-10])
    bad = subprocess.run([str(env.posterity), "-c", str(env.config), "wal", "fetch", "--source", "other", name,
                          str(tmp_path / "x")], capture_output=True, text=True, check=False)
    assert bad.returncode == 126 and "damaged" in bad.stderr


def test_push_and_fetch_on_s3_including_history_and_partial(s3_server, s3_bucket, tmp_path: Path) -> None:
    store = open_store(f"s3://{s3_bucket}/pitr", endpoint=s3_server.endpoint, region=s3_server.region,
                       access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key)
    key = tmp_path / "key.txt"
    stages = Stages((generate_identity(key),))
    ids = load_identities(key)
    files = {
        "00000002.history": b"1\t0/3000158\tbefore 2024-01-15 10:42:00+00\n",
        "000000010000000000000003.partial": os.urandom(4096),
        "000000020000000000000003": os.urandom(8192),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert walarchive.WalArchive(store, "db").push(tmp_path / name, stages).status == "stored"
        assert walarchive.WalArchive(store, "db").push(tmp_path / name, stages).status == "already archived"
        assert walarchive.WalArchive(store, "db").fetch_bytes(name, ids)[0] == data
    (tmp_path / "000000020000000000000003").write_bytes(os.urandom(8192))
    with pytest.raises(walarchive.WalConflict):
        walarchive.WalArchive(store, "db").push(tmp_path / "000000020000000000000003", stages)
    assert walarchive.WalArchive(store, "db").read_history(2, ids) == [wal.TimelineEntry(1, 0, 0x3000158),
                                                             wal.TimelineEntry(2, 0x3000158, None)]
    with pytest.raises(walarchive.WalNotArchived):
        walarchive.WalArchive(store, "db").fetch_bytes("00000003.history", ids)


def test_whole_cycle_on_an_s3_repository(s3_server, s3_bucket, tmp_path: Path) -> None:
    """archive_command pushing to S3, a base backup on S3, and a restore from S3 that starts."""
    work = Path(tempfile.mkdtemp(prefix="posterity-pitr-s3-"))
    work.chmod(0o755)
    e = Env(work)
    cluster = TempCluster(conf={"archive_mode": "on",
                                "archive_command": f"{e.command} -c {e.config} wal push %p"})
    e.config.write_text(
        f'[repository]\nurl = "s3://{s3_bucket}/prod"\nendpoint = "{s3_server.endpoint}"\nregion = "{s3_server.region}"\n'
        f'access_key_id = "{s3_server.access_key}"\nsecret_access_key = "{s3_server.secret_key}"\n\n'
        f'[encryption]\nrecipients = ["{e.recipient}"]\nidentity_file = "{e.key}"\n\n'
        f'[general]\nstate_dir = "{work / "state"}"\n\n'
        f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{cluster.dsn()}"\n')
    chown_owner(e.config, e.key)
    dest = work / "restored"
    try:
        e.ok("init")
        cluster.start()
        cluster.psql("create table t(id int primary key, at timestamptz not null default clock_timestamp())")
        insert_row(cluster, 1)
        e.ok("backup", "pitr")
        insert_row(cluster, 2)
        last = wait_archived(cluster)
        status = json.loads(e.ok("--json", "wal", "status").stdout)
        assert status["newest"] == last and status["gaps"] == [] and status["server"]["failed_count"] == 0
        port = free_port()
        proc = restore(e, dest, "latest", "--start", "--port", str(port))
        assert proc.returncode == 0, proc.stderr
        assert rows_of(port) == [1, 2]
    finally:
        stop_restored(dest)
        cluster.cleanup()
        remove_later(work)
