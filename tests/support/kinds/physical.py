"""PostgreSQL base backups plus archived WAL (postgres-physical) under the Source contract."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.install import installed_posterity
from tests.support.pitr import (
    AS_ROOT,
    chown_owner,
    posterity_for_postgres,
    stop_restored,
    wait_archived,
)
from tests.support.reap import remove_later

from posterity.demo import fingerprint, load_sample
from posterity.pgcluster import TempCluster, free_port

from .base import PG_BIN, Kind, Store, by_hand_script, fake_bin, run_script


class Physical(Kind):
    """A base backup (pg_basebackup) plus WAL archived by the cluster's archive_command — the
    installed ``posterity wal push``, run by the postgres OS user as in production — from a
    cluster shared by the session (``archiving_cluster`` fixture, tests/support/pitr.py). The
    data: one sample database.

    The shared cluster is not destroyed: ``destroy`` drops the database, and the restore
    recovers a new data directory to the LSN taken just before the drop, starts it and
    compares the database there.
    """

    id = "postgres-physical"
    source = "pitr"
    failure_words = ("pg_basebackup", "server closed the connection unexpectedly")

    def __init__(self, root: Path, cluster: TempCluster, store: Store | None = None) -> None:
        # The postgres OS user reads the config and key and writes WAL into the repository:
        # a world-traversable folder (pytest's tmp_path is not).
        self.work = Path(tempfile.mkdtemp(prefix="posterity-contract-pitr-"))
        self.work.chmod(0o755)
        super().__init__(self.work, store)
        self.cluster = cluster
        self.name = f"contract_{uuid.uuid4().hex[:10]}"
        self.ports: list[int] = []
        self.dirs: list[Path] = []
        self.lsn = ""
        cluster.psql(f'CREATE DATABASE "{self.name}"')
        load_sample(cluster.dsn(self.name), posters=20)
        self.body: dict[str, Any] = {"kind": "postgres-physical", "dsn": cluster.dsn(user="replicator"),
                                     "archive_wait": 30}
        self.configure(dict(self.body))
        # restore_command (run by PostgreSQL as its user) runs the installed posterity too.
        self.p.env = {"POSTERITY_EXECUTABLE": str(installed_posterity())}
        chown_owner(self.p.config, self.p.key)
        self.ok("init")
        if self.p.repo_url.startswith("file://"):
            (self.repo / "wal").mkdir(exist_ok=True)
            if AS_ROOT:
                subprocess.run(["chown", "-R", "postgres:postgres", str(self.repo)], check=True)
        command = f"{posterity_for_postgres()} -c {self.p.config} wal push --source {self.source} %p"
        cluster.psql(f"alter system set archive_command = '{command}'")
        cluster.psql("select pg_reload_conf()")

    def configure(self, body: dict[str, Any]) -> None:
        super().configure(body)
        chown_owner(self.p.config)

    def data(self) -> Any:
        return fingerprint(self.cluster.dsn(self.name))

    def destroy(self) -> None:
        # Some WAL after the backup's last segment, so the target is inside the next one.
        self.cluster.psql("select pg_logical_emit_message(false, 'posterity-contract', 'before the drop')")
        self.lsn = self.cluster.psql("select pg_current_wal_insert_lsn()").strip()
        wait_archived(self.cluster)  # the WAL up to the target is in the repository
        self.cluster.psql(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        assert self.cluster.psql(f"select count(*) from pg_database where datname = '{self.name}'").strip() == "0"

    def assert_nothing_restored(self) -> None:
        dest = self.dirs[-1]
        assert not dest.exists() or not any(dest.iterdir()), f"{dest} holds {sorted(p.name for p in dest.iterdir())}"

    def restore_args(self) -> list[str]:
        port = free_port()
        self.ports.append(port)
        dest = self.work / f"restored-{len(self.dirs)}"
        self.dirs.append(dest)
        return ["--to-directory", str(dest), "--start", "--port", str(port), "--target-lsn", self.lsn]

    def restored(self) -> Any:
        return fingerprint(f"postgresql://postgres@127.0.0.1:{self.ports[-1]}/{self.name}")

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # pg_basebackup streams part of the tar, then loses its connection.
        real = PG_BIN / "pg_basebackup"
        body = (
            f'if [ "$1" = "--version" ]; then exec {real} --version; fi\n'
            f'{real} "$@" | head -c 300000\n'
            'echo "pg_basebackup: error: could not read COPY data: server closed the connection unexpectedly" >&2\n'
            "exit 1\n"
        )
        folder = fake_bin(self.work / f"bin-{uuid.uuid4().hex[:6]}", "pg_basebackup", body)
        self.configure({**self.body, "bin_dir": str(folder)})
        try:
            yield
        finally:
            self.configure(dict(self.body))

    def by_hand(self, commands: list[str], work: Path) -> Any:
        """The four lines ``show`` prints: extract the tar and check it (run as printed), copy
        every archived WAL file from the start segment on into pg_wal (the printed template,
        filled per file), then recovery.signal, restore_command = 'false' and pg_ctl start."""
        assert len(commands) == 4, commands
        extract, check, wal_line, start = commands
        target = self.work / f"by-hand-{len(self.dirs)}"
        self.dirs.append(target)
        env = {"REPO": str(self.repo), "PATH": f"{PG_BIN}:{os.environ['PATH']}"}
        run_script(by_hand_script([extract, check], self.repo, self.p.key, DIR=str(target)), work, env)

        assert wal_line.startswith("for each WAL file from "), wal_line
        first, template = wal_line.removeprefix("for each WAL file from ").split(" on: ", 1)
        copies = []
        for seg in sorted((self.repo / "wal" / self.source).glob("*/*.zst.age")):
            name = seg.name.removesuffix(".zst.age")
            if name[:24] >= first and len(name) == 24:
                copies.append(template.replace("<timeline>", seg.parent.name).replace("<file>", name))
        assert copies, f"no archived WAL from {first} in {self.repo / 'wal'}"
        run_script(by_hand_script(copies, self.repo, self.p.key, DIR=str(target)), work, env)

        assert "recovery.signal" in start and "restore_command = 'false'" in start and "pg_ctl -D DIR start" in start
        port = free_port()
        (target / "recovery.signal").touch()
        with (target / "postgresql.auto.conf").open("a") as fh:
            fh.write(f"restore_command = 'false'\narchive_mode = off\nport = {port}\n"
                     "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        if AS_ROOT:
            subprocess.run(["chown", "-R", "postgres:postgres", str(target)], check=True)
        prefix = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
        proc = subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(target), "-l", str(target / "log"),
                               "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90, check=False)
        assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\n{(target / 'log').read_text()[-2000:]}"
        return fingerprint(f"postgresql://postgres@127.0.0.1:{port}/{self.name}")

    def close(self) -> None:
        self.cluster.psql("alter system set archive_command = '/bin/true'")
        self.cluster.psql("select pg_reload_conf()")
        for d in self.dirs:
            stop_restored(d)
        self.cluster.psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        remove_later(self.work)
