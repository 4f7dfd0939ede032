"""What the point-in-time recovery tests share: a project archiving and restoring through the
``posterity`` that ``scripts/install`` put in a temporary prefix (run by the PostgreSQL OS user,
as in production: no wrapper), row helpers, and stopping restored servers.

One archiving cluster serves the session (``archiving_cluster``, wired in tests/conftest.py):
each module's project (``archiving_env``) points its archive_command at that project's own
repository for as long as the module runs, and back at ``/bin/true`` after, so every module
sees only its own WAL, base backups and timelines. Tests that break archiving on purpose
(another archive_command) or replace the cluster ask ``archiving_env`` for a private one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
from tests.support.install import installed_posterity
from tests.support.reap import remove_later

from posterity.pgcluster import TempCluster
from posterity.pipeline import generate_identity
from posterity.repository import walnames as wal
from posterity.storage import LocalStore

AS_ROOT = os.geteuid() == 0


def pg_owner() -> pwd.struct_passwd:
    return pwd.getpwnam("postgres") if AS_ROOT else pwd.getpwuid(os.geteuid())


def _runs_as_owner(argv: list[str]) -> bool:
    prefix = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
    return subprocess.run([*prefix, *argv], capture_output=True, check=False).returncode == 0


def posterity_for_postgres() -> str:
    """The command PostgreSQL (as its OS user) runs for archive/restore_command: the installed one."""
    command = str(installed_posterity())
    assert _runs_as_owner([command, "--version"]), f"the postgres OS user cannot run {command}"
    return command


class Env:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.repo = work / "repo"
        self.config = work / "posterity.toml"
        self.key = work / "key.txt"
        self.command = posterity_for_postgres()
        self.posterity = installed_posterity()
        self.recipient = generate_identity(self.key)
        self.cluster: TempCluster | None = None
        self.rows: dict[int, datetime] = {}
        self.mid: datetime | None = None
        self.lsn2 = ""
        self.base_id = ""

    def write_config(self, dsn: str, pitr_extra: str = "") -> None:
        self.config.write_text(
            f'[repository]\nurl = "file://{self.repo}"\n\n'
            f'[encryption]\nrecipients = ["{self.recipient}"]\nidentity_file = "{self.key}"\n\n'
            f'[general]\nstate_dir = "{self.work / "state"}"\n\n'
            f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{dsn}"\n{pitr_extra}\n'
            f'[sources.other]\nkind = "postgres-physical"\ndsn = "{dsn}"\n'
        )

    def run(self, *args: str, timeout: float = 180, command: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the installed posterity; ``command`` overrides what restore_command runs."""
        env = {**os.environ}
        env.pop("POSTERITY_CONFIG", None)
        env.pop("POSTERITY_EXECUTABLE", None)
        if command:
            env["POSTERITY_EXECUTABLE"] = command
        return subprocess.run([str(self.posterity), "-c", str(self.config), *args], capture_output=True,
                              text=True, env=env, timeout=timeout, check=False)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args)
        assert proc.returncode == 0, f"posterity {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.repo)

    def payload_path(self, name: str, source: str = "pitr") -> Path:
        return self.repo / wal.payload_key(source, name)


def chown_owner(*paths: Path) -> None:
    if AS_ROOT:
        o = pg_owner()
        for p in paths:
            os.chown(p, o.pw_uid, o.pw_gid)


def wait_archived(cluster: TempCluster, timeout: float = 60) -> str:
    """Switch WAL and wait until the completed segment is archived; returns its name."""
    seg = cluster.psql("select pg_walfile_name(pg_switch_wal())").strip()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = cluster.psql("select coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') from pg_stat_archiver")
        done, failed = row.strip().split("|")
        if done[:24] >= seg:
            return seg
        time.sleep(0.1)
    raise AssertionError(f"{seg} not archived in {timeout}s (last failed: {failed}); log:\n{cluster.log_file.read_text()[-3000:]}")


def insert_row(cluster: TempCluster, row: int) -> datetime:
    at = cluster.psql(f"insert into t(id) values ({row}) returning at").strip()
    return datetime.fromisoformat(at)


def stop_restored(d: Path) -> None:
    if (d / "postmaster.pid").exists():
        pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl"
        prefix = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
        subprocess.run([*prefix, pg_ctl, "-D", str(d), "stop", "-m", "fast", "-w"], capture_output=True, check=False)


def rows_of(port: int) -> list[int]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        return [r[0] for r in conn.execute("select id from t order by id").fetchall()]


def restore(env: Env, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return env.run("--json", "restore", "pitr", *args, "--to-directory", str(dest))


#: The table the PITR scenarios write their numbered rows into (``insert_row``, ``rows_of``).
ROWS_TABLE = "t(id int primary key, at timestamptz not null default clock_timestamp())"


def start_archiving_cluster(archive_command: str = "/bin/true") -> TempCluster:
    """A started cluster with WAL archiving on and a REPLICATION role (``replicator``) for
    pg_basebackup; the caller cleans it up."""
    cluster = TempCluster(conf={"archive_mode": "on", "archive_command": archive_command})
    try:
        cluster.start()
        cluster.psql("create role replicator with login replication")
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


def set_archive_command(cluster: TempCluster, command: str) -> None:
    cluster.psql(f"alter system set archive_command = '{command}'")
    cluster.psql("select pg_reload_conf()")


def archive_into(e: Env, timeout: float = 60) -> None:
    """Point the (shared) cluster's archive_command at ``e``'s repository and return once a
    segment completed after the change is stored there (the archiver re-reads its settings
    asynchronously after a reload)."""
    assert e.cluster is not None
    set_archive_command(e.cluster, f"{e.command} -c {e.config} wal push --source pitr %p")
    deadline = time.monotonic() + timeout
    while True:
        e.cluster.psql("select pg_logical_emit_message(false, 'posterity-tests', 'switch')")
        seg = wait_archived(e.cluster, timeout)
        if e.payload_path(seg).is_file():
            return
        assert time.monotonic() < deadline, f"{seg} was archived, but not into {e.repo}"
        time.sleep(0.05)


@contextlib.contextmanager
def archiving_env(prefix: str, shared: TempCluster | None = None, *, archive_command: str | None = None,
                  pitr_extra: str = "", table: str = ROWS_TABLE) -> Iterator[Env]:
    """A project (file:// repository, sources ``pitr`` and ``other`` on one cluster) whose
    cluster archives into it through the installed ``posterity wal push``, with an empty
    ``table`` in the postgres database.

    ``shared``: the session's archiving cluster, archiving into this project until the block
    ends. Without it a private cluster is started, archiving with ``archive_command`` (default:
    into this project) — for tests that change archive_command or the cluster itself.
    """
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    e = Env(work)
    push = f"{e.command} -c {e.config} wal push --source pitr %p"
    cluster = shared if shared is not None else TempCluster(
        conf={"archive_mode": "on", "archive_command": archive_command or push})
    e.cluster = cluster
    e.write_config(cluster.dsn(user="replicator"), pitr_extra=pitr_extra)  # a REPLICATION role
    chown_owner(e.config, e.key)
    try:
        e.ok("init")
        (e.repo / "wal").mkdir()
        if AS_ROOT:
            subprocess.run(["chown", "-R", "postgres:postgres", str(e.repo)], check=True)
        if shared is None:
            cluster.start()
            cluster.psql("create role replicator with login replication")
        else:
            archive_into(e)
        cluster.psql(f"drop table if exists t; create table {table}")
        yield e
    finally:
        for d in work.rglob("restored*"):
            stop_restored(d)
        if cluster.running:
            # Shared: this project's repository goes next. Private: a failing archive_command
            # (a test's) would hold the shutdown for PostgreSQL's archive retries (~3 s).
            set_archive_command(cluster, "/bin/true")
        if shared is None:
            cluster.cleanup()
        remove_later(work)  # restored data directories: seconds of disk time, off the critical path
