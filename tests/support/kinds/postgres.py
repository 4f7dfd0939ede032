"""PostgreSQL logical backups under the Source contract: one pg_dump archive, or the split
layout (a schema archive plus data archives dumped in parallel from one snapshot)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posterity.demo import fingerprint, load_sample
from posterity.pgcluster import TempCluster

from .base import PG_BIN, Kind, Store, by_hand_script, fake_bin, run_script


class Postgres(Kind):
    """A logical backup, one pg_dump archive (``split=False``) or a schema archive plus data
    archives dumped in parallel from one snapshot (``split=True``: jobs 2, part size 0)."""

    source = "db"
    failure_words = ("pg_dump", "lock timeout")

    def __init__(self, root: Path, cluster: TempCluster, split: bool, store: Store | None = None) -> None:
        super().__init__(root, store)
        self.id = "postgres-split" if split else "postgres"
        self.split = split
        self.cluster = cluster
        self.name = f"contract_{uuid.uuid4().hex[:10]}"
        self.others: list[str] = []
        cluster.psql(f'CREATE DATABASE "{self.name}"')
        load_sample(self.dsn(), posters=40)
        self.body: dict[str, Any] = {"kind": "postgres", "dsn": self.dsn()}
        if split:
            self.body.update(jobs=2, part_size_mib=0)
        self.configure(dict(self.body))
        self.ok("init")

    def dsn(self, name: str | None = None) -> str:
        return self.cluster.dsn(name or self.name)

    def data(self) -> Any:
        return fingerprint(self.dsn())

    def destroy(self) -> None:
        self.cluster.psql(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        assert self.cluster.psql(f"select count(*) from pg_database where datname = '{self.name}'").strip() == "0"

    def assert_nothing_restored(self) -> None:
        assert self.cluster.psql(f"select count(*) from pg_database where datname = '{self.name}'").strip() == "0"

    def restore_args(self) -> list[str]:
        return ["--to-database", self.name]

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # pg_dump streams part of its archive, then fails as it does on a lock timeout. The
        # split layout dumps its schema whole and fails in the data archives.
        cut = (
            f'{PG_BIN}/pg_dump "$@" | head -c 20000\n'
            'echo "pg_dump: error: query failed: canceling statement due to lock timeout" >&2\nexit 1\n'
        )
        body = f'case "$*" in *--section=data*) {cut};; esac\nexec {PG_BIN}/pg_dump "$@"\n' if self.split else (
            f'if [ "$1" = "--version" ]; then exec {PG_BIN}/pg_dump --version; fi\n{cut}'
        )
        folder = fake_bin(self.root / f"bin-{uuid.uuid4().hex[:6]}", "pg_dump", body)
        self.configure({**self.body, "bin_dir": str(folder)})
        try:
            yield
        finally:
            self.configure(dict(self.body))

    def by_hand(self, commands: list[str], work: Path) -> Any:
        target = f"{self.name}_hand"
        self.others.append(target)
        # The roles exist already in this cluster: the globals line would only repeat them.
        commands = [c for c in commands if "psql -X -d postgres" not in c]
        assert len(commands) == (3 if self.split else 1), commands
        script = by_hand_script(commands, self.repo, self.p.key, NEWDB=target)
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(self.cluster.port), "PGUSER": "postgres",
               "PATH": f"{PG_BIN}:{os.environ['PATH']}", "REPO": str(self.repo)}
        run_script(script, work, env)
        return fingerprint(self.dsn(target))

    def close(self) -> None:
        for name in [self.name, *self.others]:
            self.cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
