"""Streaming mode (``wal = "stream"``) end to end: a real PostgreSQL 15 without archive_command,
``posterity wal stream`` running pg_receivewal through the slot it creates, base backups
that wait for their streamed WAL, and restores that find the last commit.

    base backup ─ rows 1..3 (whole segments) ─ row 10 (only in a snapshot) ─ server destroyed
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.pitr import (
    Env,
    chown_owner,
    insert_row,
    restore,
    rows_of,
    stop_restored,
)
from tests.support.reap import remove_later

from posterity.pgcluster import TempCluster, free_port
from posterity.repository import walnames as wal
from posterity.repository.walarchive import WalArchive

INTERVAL = 0.5


class StreamEnv(Env):
    streamer: subprocess.Popen[str] | None = None

    def write_stream_config(self, dsn: str) -> None:
        self.config.write_text(
            f'[repository]\nurl = "file://{self.repo}"\n\n'
            f'[encryption]\nrecipients = ["{self.recipient}"]\nidentity_file = "{self.key}"\n\n'
            f'[general]\nstate_dir = "{self.work / "state"}"\n\n'
            f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{dsn}"\nwal = "stream"\n'
            f"stream_interval = {INTERVAL}\narchive_wait = 60\n\n"
            f'[sources.noslot]\nkind = "postgres-physical"\ndsn = "{dsn}"\nwal = "stream"\narchive_wait = 5\n\n'
            f'[sources.archived]\nkind = "postgres-physical"\ndsn = "{dsn}"\n'
        )

    def start_streamer(self, *command: str) -> subprocess.Popen[str]:
        env = {**os.environ}
        env.pop("POSTERITY_CONFIG", None)
        self.streamer = subprocess.Popen([str(self.posterity), "-c", str(self.config), "-v",
                                          *(command or ("wal", "stream", "--source", "pitr"))],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = self.status()
            if (st.get("stream", {}).get("slot_state") or {}).get("active"):
                return self.streamer
            if self.streamer.poll() is not None:
                raise AssertionError(f"wal stream exited {self.streamer.returncode}: {self.streamer.communicate()}")
            time.sleep(0.2)
        raise AssertionError("the streamer did not take its slot within 30s")

    def stop_streamer(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        assert self.streamer is not None
        self.streamer.send_signal(sig)
        out, err = self.streamer.communicate(timeout=30)
        rc, self.streamer = self.streamer.returncode, None
        return rc, out + err

    def status(self) -> dict:
        proc = self.run("--json", "wal", "status", "--source", "pitr")
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def wait_stored(self, what, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what(WalArchive(self.store, "pitr").listing()):
                return
            time.sleep(0.1)
        raise AssertionError(f"not stored within {timeout}s; status: {self.status()}")


def _segment_stored(name: str):
    return lambda listing: listing.has(name)


def _stored_through(lsn: str):
    """WAL up to ``lsn`` is in the repository: in a whole segment, or in a snapshot that long.
    (A snapshot stored after a commit need not hold it: the file may have been read before.)
    A snapshot's length leaves out trailing zeros, which include a record's alignment padding
    (up to 7 bytes) and any zero bytes ending the record itself: 16 bytes of slack."""
    target = wal.parse_lsn(lsn) - 16
    seg = wal.DEFAULT_SEGMENT_SIZE

    def covered(listing) -> bool:
        for f in listing.complete():
            start = wal.segno_of(f.name) * seg
            if f.kind == "segment" and start + seg >= target:
                return True
            if f.kind == "stream" and start + wal.stream_length(f.name) >= target:
                return True
        return False

    return covered


def _flushed(cluster: TempCluster) -> str:
    return cluster.psql("select pg_current_wal_flush_lsn()").strip()


@pytest.fixture(scope="module")
def senv():
    work = Path(tempfile.mkdtemp(prefix="posterity-stream-"))
    work.chmod(0o755)
    e = StreamEnv(work)
    # No archive_mode: WAL leaves only through the stream. Commits flush before they return
    # (TempCluster turns synchronous_commit off by default), so a committed row is streamable.
    cluster = TempCluster(conf={"synchronous_commit": "on"})
    e.cluster = cluster
    e.write_stream_config(cluster.dsn(user="replicator"))
    chown_owner(e.config, e.key)
    try:
        e.ok("init")
        cluster.start()
        cluster.psql("create role replicator with login replication")
        cluster.psql("create table t(id int primary key, at timestamptz not null default clock_timestamp())")
        e.start_streamer()
        yield e
    finally:
        if e.streamer is not None:
            e.streamer.kill()
            e.streamer.wait()
        for d in work.glob("restored*"):
            stop_restored(d)
        cluster.cleanup()
        remove_later(work)


def test_base_backup_waits_for_streamed_wal_and_segments_leave_the_local_folder(senv: StreamEnv) -> None:
    out = json.loads(senv.ok("--json", "backup", "pitr").stdout)
    manifest = json.loads(senv.ok("--json", "show", out["backups"][0]["id"]).stdout)
    facts = manifest["facts"]
    assert facts["wal_method"] == "stream" and facts["slot"] == "posterity_pitr"
    assert WalArchive(senv.store, "pitr").listing().has(facts["wal_stop_segment"])  # stored before the commit
    assert senv.cluster is not None
    for row in (1, 2, 3):
        insert_row(senv.cluster, row)
        seg = senv.cluster.psql("select pg_walfile_name(pg_switch_wal())").strip()
    senv.wait_stored(_segment_stored(seg))
    st = senv.status()
    assert st["gaps"] == [] and st["newest"] >= seg and st["wal_method"] == "stream"
    stream = st["stream"]
    assert stream["slot_state"]["active"] and stream["failing"] is False
    assert stream["streamer"]["segments_stored"] >= 3 and stream["streamer"]["last_error"] is None
    folder = senv.work / "state" / "walstream" / "pitr"
    time.sleep(INTERVAL * 3)
    assert not [n for n in os.listdir(folder) if len(n) == 24], "stored segments must leave the local folder"
    human = senv.ok("wal", "status", "--source", "pitr").stdout
    assert "slot posterity_pitr in use" in human


def test_second_streamer_is_refused(senv: StreamEnv) -> None:
    proc = senv.run("wal", "stream", "--source", "pitr", timeout=30)
    assert proc.returncode == 8, proc.stderr
    assert "Another streamer" in proc.stderr and "pitr" in proc.stderr


def test_base_backup_without_a_slot_and_stream_on_an_archive_source_are_refused(senv: StreamEnv) -> None:
    proc = senv.run("backup", "noslot")
    assert proc.returncode == 5
    assert "no replication slot 'posterity_noslot'" in proc.stderr and "posterity wal stream --source noslot" in proc.stderr
    proc = senv.run("wal", "stream", "--source", "archived")
    assert proc.returncode == 2 and 'wal = "stream"' in proc.stderr


def test_streamer_restart_leaves_no_gap(senv: StreamEnv) -> None:
    """WAL written while the streamer is stopped stays on the server (the slot) and arrives
    later — here through `posterity daemon`, which runs a streamer per streaming source."""
    rc, _ = senv.stop_streamer()
    assert rc == 0
    assert senv.cluster is not None
    for row in (4, 5):
        insert_row(senv.cluster, row)
        seg = senv.cluster.psql("select pg_walfile_name(pg_switch_wal())").strip()
    assert not WalArchive(senv.store, "pitr").listing().has(seg)
    st = senv.status()
    assert st["stream"]["slot_state"]["active"] is False and st["stream"]["failing"] is True
    assert senv.run("wal", "status", "--source", "pitr").returncode == 1
    senv.start_streamer("daemon")
    senv.wait_stored(_segment_stored(seg))
    assert senv.status()["gaps"] == []
    rc, err = senv.stop_streamer()
    assert rc == 0, err
    assert "Streaming WAL" in err  # the daemon's log names what it runs
    senv.start_streamer()


def test_drop_slot_refuses_a_slot_in_use_and_drops_an_idle_one(senv: StreamEnv) -> None:
    proc = senv.run("wal", "stream", "--source", "pitr", "--drop-slot")
    assert proc.returncode == 8 and "Another streamer" in proc.stderr  # this host's streamer holds the folder
    assert senv.cluster is not None
    senv.cluster.psql("select pg_create_physical_replication_slot('posterity_noslot') "
                      "where not exists (select 1 from pg_replication_slots where slot_name = 'posterity_noslot')")
    senv.ok("wal", "stream", "--source", "noslot", "--drop-slot")
    assert senv.cluster.psql("select count(*) from pg_replication_slots where slot_name = 'posterity_noslot'").strip() == "0"
    assert "no replication slot" in senv.ok("wal", "stream", "--source", "noslot", "--drop-slot").stdout


def test_snapshot_restore_to_a_time_inside_the_unfinished_segment(senv: StreamEnv) -> None:
    assert senv.cluster is not None
    insert_row(senv.cluster, 6)
    time.sleep(0.3)
    mid = datetime.now(UTC)
    time.sleep(0.3)
    insert_row(senv.cluster, 7)
    senv.wait_stored(_stored_through(_flushed(senv.cluster)))
    dest = senv.work / "restored-time"
    port = free_port()
    try:
        proc = restore(senv, dest, "latest", "--target-time", mid.isoformat(), "--start", "--port", str(port))
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["wal_tail"] and result["wal_tail"].endswith(".stream")
        assert rows_of(port) == [1, 2, 3, 4, 5, 6]
    finally:
        stop_restored(dest)


def test_drill_of_a_streaming_source_while_it_writes(senv: StreamEnv) -> None:
    """The drill recovers through the streaming tail while the server keeps writing (the
    streamer replaces snapshots meanwhile) and archives nothing of its own."""
    import threading

    assert senv.cluster is not None
    stop = threading.Event()

    def write() -> None:
        n = 100
        while not stop.is_set():
            insert_row(senv.cluster, n)  # type: ignore[arg-type]
            n += 1
            time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(INTERVAL * 3)
        proc = senv.run("--json", "drill", "--source", "pitr", timeout=300)
    finally:
        stop.set()
        writer.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)["drills"][0]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["recovery"]["ok"] and "streaming snapshot" in checks["recovery"]["detail"], checks["recovery"]
    assert checks["archiving off in the copy"]["ok"]
    senv.cluster.psql("delete from t where id >= 100")


def test_destroyed_server_restores_to_its_last_commit(senv: StreamEnv) -> None:
    """The RPO check: commit, let one snapshot be stored, kill the server and the streamer
    (SIGKILL: nothing is flushed on the way out), delete the data directory, restore latest."""
    assert senv.cluster is not None and senv.streamer is not None
    insert_row(senv.cluster, 10)
    senv.wait_stored(_stored_through(_flushed(senv.cluster)), timeout=10)
    senv.streamer.kill()
    senv.streamer.wait()
    senv.streamer = None
    senv.cluster.kill()
    shutil.rmtree(senv.cluster.data_dir / "pg_wal")  # the server's own WAL is gone too
    dest = senv.work / "restored-latest"
    port = free_port()
    try:
        proc = restore(senv, dest, "latest", "--start", "--port", str(port))
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        tail = result["wal_tail"]
        assert tail and wal.parse_name(tail).kind == "stream"
        assert rows_of(port) == [1, 2, 3, 4, 5, 6, 7, 10]
    finally:
        stop_restored(dest)


def test_streaming_into_s3_restores_the_last_commit(s3_server, s3_bucket) -> None:
    """The same cycle against the S3 test server: slot, streamed segments and snapshots on S3,
    server SIGKILLed together with its streamer, restore to latest finds the last row."""
    work = Path(tempfile.mkdtemp(prefix="posterity-stream-s3-"))
    work.chmod(0o755)
    e = StreamEnv(work)
    cluster = TempCluster(conf={"synchronous_commit": "on"})
    e.cluster = cluster
    e.config.write_text(
        f'[repository]\nurl = "s3://{s3_bucket}/prod"\nendpoint = "{s3_server.endpoint}"\nregion = "{s3_server.region}"\n'
        f'access_key_id = "{s3_server.access_key}"\nsecret_access_key = "{s3_server.secret_key}"\n\n'
        f'[encryption]\nrecipients = ["{e.recipient}"]\nidentity_file = "{e.key}"\n\n'
        f'[general]\nstate_dir = "{work / "state"}"\n\n'
        f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{cluster.dsn()}"\nwal = "stream"\n'
        f"stream_interval = {INTERVAL}\n")
    chown_owner(e.config, e.key)
    dest = work / "restored"
    store = None
    try:
        e.ok("init")
        cluster.start()
        cluster.psql("create table t(id int primary key, at timestamptz not null default clock_timestamp())")
        e.start_streamer()
        e.ok("backup", "pitr")
        insert_row(cluster, 1)
        cluster.psql("select pg_switch_wal()")
        insert_row(cluster, 2)
        flushed = _flushed(cluster)
        from posterity.storage import open_store

        store = open_store(f"s3://{s3_bucket}/prod", **s3_server.store_kwargs())
        deadline = time.monotonic() + 20
        while not _stored_through(flushed)(WalArchive(store, "pitr").listing()):
            assert time.monotonic() < deadline, "no snapshot stored on S3 after the commit"
            time.sleep(0.1)
        assert e.streamer is not None
        e.streamer.kill()
        e.streamer.wait()
        e.streamer = None
        cluster.kill()
        port = free_port()
        proc = restore(e, dest, "latest", "--start", "--port", str(port))
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["wal_tail"]  # row 2 is only in the streaming snapshot
        assert rows_of(port) == [1, 2]
    finally:
        if e.streamer is not None:
            e.streamer.kill()
        stop_restored(dest)
        cluster.cleanup()
        remove_later(work)
