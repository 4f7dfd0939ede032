"""What the point-in-time recovery tests share: a project archiving and restoring through the
``posterity`` that ``scripts/install`` put in a temporary prefix (run by the PostgreSQL OS user,
as in production: no wrapper), row helpers, and stopping restored servers."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psycopg
from tests.support.install import installed_posterity

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
