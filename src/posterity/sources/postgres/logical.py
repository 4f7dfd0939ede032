"""Logical PostgreSQL backups: ``pg_dump -Fc -Z0`` (plus ``pg_dumpall --globals-only``).

Consistency: Posterity opens a REPEATABLE READ transaction, exports its snapshot and runs
pg_dump with ``--snapshot``, so the dump, the recorded WAL position and the per-table row
counts (counted in the same snapshot, beside the running dump) describe one moment.
pg_dump writes uncompressed (-Z0): compression happens once, in the pipeline's zstd.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ... import pipes
from ...errors import DumpFailed, SourceError, ToolVersionError
from ..base import Artifact, Source
from .config import PostgresConfig
from .parallel_dump import (
    SCHEMA_KIND,
    TABLE_SIZES,
    Parts,
    default_jobs,
    plan_parts,
    split_artifacts,
    split_by_hand,
)
from .tools import client_env, connect, describe, require_client, server_facts

log = logging.getLogger(__name__)

DUMP_KIND = "pg_dump-custom"
GLOBALS_KIND = "pg_dumpall-globals"

USER_TABLES = """
select n.nspname, c.relname
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'm')
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
  and n.nspname not like 'pg_temp%'
  and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')
order by 1, 2
"""


class _Process:
    """A child whose stdout is an artifact stream; stderr goes to a temp file (no deadlock)."""

    def __init__(self, argv: list[str], env: dict[str, str], what: str) -> None:
        self.what = what
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr, env=env, bufsize=0)
        except FileNotFoundError as exc:
            raise SourceError(f"Cannot run {argv[0]}: {exc.strerror}.") from exc
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        pipes.grow(self.stdout)  # the dump runs on while we compress a chunk

    def error_text(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return "\n".join(lines[-5:])

    def finish(self) -> None:
        rc = self.proc.wait()
        self.stdout.close()
        if rc != 0:
            err = self.error_text()
            if "server version mismatch" in err or "aborting because of server version mismatch" in err:
                raise ToolVersionError(f"{self.what} refused the server: {err}")
            raise DumpFailed(f"{self.what} failed (exit {rc}): {err or 'no message'}")

    def kill(self) -> None:
        """From any thread: end the child now (SIGKILL also ends a stopped one); the reader
        then sees end-of-file. Waiting and closing stay with the reading thread (``abort``)."""
        if self.proc.poll() is None:
            self.proc.kill()

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stdout.close()


class PostgresSource(Source):
    kind = "postgres"
    config: PostgresConfig

    def __init__(self, name: str, config: PostgresConfig) -> None:
        super().__init__(name, config)
        self.dsn = config.dsn.get_secret_value()
        self._facts: dict[str, Any] = {}
        self.jobs: int | None = None  # --jobs of this run; else config.jobs; else the cores (at most 8)

    def check(self) -> dict[str, Any]:
        with connect(self.dsn) as conn:
            facts = server_facts(conn)
        major = facts["server_version_num"] // 10000
        pg_dump, version = require_client("pg_dump", major, self.config.bin_dir)
        facts["pg_dump"] = str(pg_dump)
        facts["pg_dump_version"] = version
        facts["target"] = describe(self.dsn)
        self._facts.update(facts)
        return facts

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def dump(self) -> Iterator[Artifact]:
        if "server_version_num" not in self._facts:
            self.check()
        facts = self._facts
        major = facts["server_version_num"] // 10000
        db = facts["database"]
        env = client_env(self.dsn)
        conn = connect(self.dsn, autocommit=False)
        counter: threading.Thread | None = None
        tracker = Parts()
        try:
            conn.execute("begin isolation level repeatable read read only")
            row = conn.execute(
                "select pg_export_snapshot(), now(), "
                "case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end::text"
            ).fetchone()
            assert row is not None
            snapshot, at, lsn = row
            facts["snapshot_time"] = at.isoformat()
            facts["snapshot_lsn"] = lsn
            facts["consistency_marker"] = {"lsn": lsn, "time": at.isoformat()}
            parts = self._plan(conn, facts)  # before the counter thread shares the connection
            if self.config.row_counts != "off":
                counter = threading.Thread(target=self._count_rows, args=(conn,), daemon=True)
                counter.start()

            if self.config.globals:
                yield self._globals_artifact(major, db, env)

            pg_dump, _ = require_client("pg_dump", major, self.config.bin_dir)
            argv = [str(pg_dump), "--format=custom", "--compress=0", f"--snapshot={snapshot}", "--no-password"]
            for pattern in self.config.exclude_table_data:
                argv.append(f"--exclude-table-data={pattern}")
            if self.config.lock_wait_timeout:  # pg_dump sets lock_timeout = 0 itself: only this bounds it
                argv.append(f"--lock-wait-timeout={self.config.lock_wait_timeout}")
            if parts:
                excluded = list(self.config.exclude_table_data)
                yield from split_artifacts(db, argv, parts, lambda a, w: self._start(a, env, w), tracker, excluded)
                tracker.wait()  # the snapshot must outlive every pg_dump that imports it
                if counter is not None and not tracker.failed:
                    counter.join()
                return
            proc = _Process(argv, env, f"pg_dump of {describe(self.dsn)}")
            yield tracker.track(Artifact(
                name=f"{db}.pgdump",
                kind=DUMP_KIND,
                stream=proc.stdout,
                expected_size=facts.get("database_size"),
                facts={"database": db, "format": "custom"},
                finish=proc.finish,
                abort=proc.abort,
                cancel=proc.kill,
            ))
            # Stored concurrently (--jobs), the next artifact is asked for while pg_dump runs.
            tracker.wait()
            if counter is not None and not tracker.failed:  # else cancelled below
                counter.join()
        finally:
            tracker.abort_pending()  # the backup failed or was interrupted: stop its pg_dumps
            if counter is not None and counter.is_alive():
                # The dump failed while the counts still run (e.g. both wait for a lock a
                # migration holds): cancel them, or this backup would hang until it ends.
                self._counts_cancelled = True
                with contextlib.suppress(psycopg.Error):
                    conn.cancel()
                counter.join(timeout=30)
            try:
                conn.rollback()
            except psycopg.Error:
                pass  # the server went away mid-dump; pg_dump's own error tells the user
            finally:
                conn.close()

    def _plan(self, conn: psycopg.Connection, facts: dict[str, Any]) -> list:
        jobs = self.jobs or self.config.jobs or default_jobs()
        facts["jobs"] = jobs
        if jobs <= 1:
            return []
        tables = [(s, t, int(n or 0)) for s, t, n in conn.execute(TABLE_SIZES).fetchall()]
        parts = plan_parts(tables, int(facts.get("database_size") or 0), jobs, self.config.part_size_mib << 20)
        facts["layout"] = "split" if parts else "single"
        return parts

    def _start(self, argv: list[str], env: dict[str, str], what: str) -> tuple:
        proc = _Process(argv, env, what)
        return proc.stdout, proc.finish, proc.abort, proc.kill

    def _count_rows(self, conn: psycopg.Connection) -> None:
        counts: dict[str, int] = {}
        try:
            tables = conn.execute(USER_TABLES).fetchall()
            for schema, table in tables:
                if self.config.row_counts == "exact":
                    q = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                else:
                    q = sql.SQL("select greatest(reltuples, 0)::bigint from pg_class where oid = {}::regclass").format(
                        sql.Literal(f'"{schema}"."{table}"')
                    )
                r = conn.execute(q).fetchone()
                counts[f"{schema}.{table}"] = int(r[0]) if r else 0
            self._facts["row_counts"] = counts
            self._facts["row_counts_kind"] = self.config.row_counts
        except Exception as exc:  # counts are informative; the dump itself decides success
            if not getattr(self, "_counts_cancelled", False):
                log.warning("Could not count rows: %s", exc)

    def _globals_artifact(self, major: int, db: str, env: dict[str, str]) -> Artifact:
        pg_dumpall, _ = require_client("pg_dumpall", major, self.config.bin_dir)
        argv = [str(pg_dumpall), "--globals-only", "--no-password", f"--database={db}"]
        # Reading role passwords needs superuser; a lesser role still gets the roles.
        with connect(self.dsn) as c:
            row = c.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
        superuser = bool(row and row[0])
        if not superuser:
            argv.append("--no-role-passwords")
        self._facts["globals_with_passwords"] = superuser
        proc = _Process(argv, env, "pg_dumpall --globals-only")
        return Artifact(
            name="globals.sql",
            kind=GLOBALS_KIND,
            stream=proc.stdout,
            expected_size=1 << 20,
            finish=proc.finish,
            abort=proc.abort,
            cancel=proc.kill,
        )

    def by_hand(self, manifest: Any) -> list[str]:
        if manifest.artifacts_of_kind(SCHEMA_KIND):
            return split_by_hand(manifest, GLOBALS_KIND)
        cmds = []
        for art in manifest.artifacts:
            if art.kind == DUMP_KIND:
                cmds.append(
                    f'rclone cat "$REPO/{art.key}" | age -d -i key.txt | zstd -d > {art.name}'
                    f" && createdb NEWDB && pg_restore --exit-on-error -j 4 -d NEWDB {art.name}"
                )
            elif art.kind == GLOBALS_KIND:
                cmds.append(f'rclone cat "$REPO/{art.key}" | age -d -i key.txt | zstd -d | psql -X -d postgres')
        return cmds
