"""Restore a logical PostgreSQL backup into a new or empty database, or replace one.

The database is created as the backup's was (encoding, locale, ICU: ``restore_target``), and
gets the backup's database-level settings, comment and privileges. ``--clean`` restores into
a new database beside the existing one and switches the names when it is complete; the old
one is kept under ``<name>_before_<time>``. ``--with-roles`` creates missing roles only
(``restore_roles``).

Streaming (``jobs == 1``): verify → decrypt → decompress straight into ``pg_restore``'s stdin.
Parallel (``jobs > 1``): pg_restore -j needs a seekable file, so the decoded dump is staged
in ``staging_dir`` (free space is checked first) and removed afterwards.

A restore never reports success on partial data: pg_restore runs with --exit-on-error, the
stored object's sha256 and size are checked to the last byte, and on any failure the
database this restore created is dropped before the error is raised.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ...errors import (
    LocalResourceError,
    PosterityError,
    RestoreFailed,
    RestoreTargetError,
    reworded,
)
from ...repository import Manifest, Repository
from .archive_database import quote_ident, read_database_info
from .logical import DUMP_KIND, USER_TABLES
from .restore_roles import RolesResult, restore_globals
from .restore_stream import Tap, stream_into
from .restore_target import (
    apply_properties,
    build_name,
    check_encoding,
    create_like,
    is_empty,
    leftovers,
    swap_in,
)
from .tools import client_env, connect, describe, parse_dsn, require_client, with_database

log = logging.getLogger(__name__)


@dataclass
class PostgresRestore:
    dsn: str
    to_database: str
    jobs: int = 1
    clean: bool = False
    with_roles: bool = False
    overwrite_roles: bool = False
    no_owner: bool = False
    staging_dir: Path | None = None
    check_counts: bool = False
    bin_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)


def _maintenance_conn(dsn: str) -> psycopg.Connection:
    last: PosterityError | None = None
    for db in ("postgres", "template1", parse_dsn(dsn).get("dbname")):
        if not db:
            continue
        try:
            return connect(dsn, dbname=db)
        except PosterityError as exc:
            last = exc
    assert last is not None
    raise last


def restore_logical(
    repo: Repository, manifest: Manifest, identities: list, req: PostgresRestore, progress=None
) -> dict[str, Any]:
    from .parallel_restore import default_jobs, is_split, restore_split, schema_archive

    split = is_split(manifest)  # a schema archive plus data archives (parallel_dump)
    dumps = manifest.artifacts_of_kind(DUMP_KIND)
    if not dumps and not split:
        raise RestoreFailed(f"Backup {manifest.id} holds no pg_dump archive.")
    if split:
        req.jobs = req.jobs or default_jobs()
    dump = dumps[0] if dumps else None
    target = req.to_database
    started = time.monotonic()

    with _maintenance_conn(req.dsn) as conn:
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
        assert row is not None
        server_major = int(row[0]) // 10000
        exists = conn.execute("select 1 from pg_database where datname = %s", (target,)).fetchone() is not None
        for name in leftovers(conn, target):
            req.warnings.append(f"database {name!r} was left by a --clean restore of {target!r} that did not "
                                f"finish; drop it when no restore is running: DROP DATABASE {quote_ident(name)};")
    replace = exists and not is_empty(req.dsn, target)
    if replace and not req.clean:
        raise RestoreTargetError(
            f"The database {target!r} already exists and is not empty; nothing was changed.",
            hint="Restore into a new name with --to-database, or add --clean to replace it (the old one is kept "
                 "under another name until you drop it).",
        )
    pg_restore, _ = require_client("pg_restore", server_major, req.bin_dir)
    try:
        info = read_database_info(repo, dump or schema_archive(manifest), identities)
    except PosterityError as exc:
        raise reworded(exc, exc.message + " Nothing was changed.") from exc
    # --clean never drops first: restore beside the old database, then switch names.
    into = build_name(target) if replace else target
    created = False
    staged: Path | None = None
    notes: list[str] = []
    roles: RolesResult | None = None
    try:
        with _maintenance_conn(req.dsn) as conn:
            if exists and not replace:
                req.warnings.extend(check_encoding(conn, target, info))
            else:
                notes += create_like(conn, into, info)
                created = True
        if req.with_roles:
            roles = restore_globals(repo, manifest, identities, req.dsn, server_major, req.bin_dir,
                                    req.overwrite_roles)
            req.warnings.extend(roles.warnings)

        argv = [str(pg_restore), "--exit-on-error", "--no-password", f"--dbname={into}"]
        if req.no_owner:
            argv += ["--no-owner", "--no-privileges"]
        env = client_env(req.dsn, dbname=into)
        # pg_restore --dbname=NAME would treat a name containing '=' as a conninfo; keep PGDATABASE too.
        loaded: dict[str, Any] = {}
        if split:
            loaded = restore_split(repo, manifest, identities, argv, env, jobs=req.jobs,
                                   staging_dir=req.staging_dir, progress=progress)
        elif req.jobs > 1:
            staged = _stage(repo, dump, identities, req, progress)
            _run([*argv, f"--jobs={req.jobs}", str(staged)], env, None)
        else:
            stream_into(repo, dump, identities, argv, env, progress)
        req.warnings.extend(apply_properties(req.dsn, into, info, owner=req.with_roles and not req.no_owner,
                                             privileges=not req.no_owner))
        counts = None
        if req.check_counts:  # checked before the switch: a short copy never replaces anything
            counts = check_row_counts(req.dsn, into, manifest.facts.get("row_counts") or {})
    except BaseException as exc:
        if created:
            _drop(req.dsn, into)
            note = f" The partly restored database {into!r} was dropped."
            if replace:
                note += f" {target!r} was not changed."
        elif exists:
            note = f" The database {target!r} may hold partial data; restore again with --clean."
        else:
            note = ""
        if isinstance(exc, PosterityError):
            raise reworded(exc, exc.message + note) from exc
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise RestoreFailed(f"Restore of {manifest.id} into {target!r} failed: {exc}.{note}") from exc
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    result: dict[str, Any] = {
        "backup": manifest.id,
        "database": target,
        "server": describe(with_database(req.dsn, target)),
        "created": created and not replace,
        "bytes": dump.raw_size if dump else loaded.get("bytes"),
        "jobs": req.jobs,
        **{k: v for k, v in loaded.items() if k != "bytes"},
    }
    if replace:
        with _maintenance_conn(req.dsn) as conn:
            kept = swap_in(conn, into, target)
        result["kept"] = kept
        req.warnings.append(f"the previous {target!r} is kept, whole, as {kept!r}; drop it when you no longer need "
                            f"it: DROP DATABASE {quote_ident(kept)};")
    if roles is not None:
        result["roles"] = {"created": roles.created, "skipped": roles.skipped}
        if roles.skipped and not req.overwrite_roles:
            req.warnings.append(f"roles that already exist were left as they are: {', '.join(roles.skipped)} "
                                "(--overwrite-roles replaces them with the backup's)")
    if counts is not None:
        result["row_counts"] = counts
    result["notes"] = notes
    result["seconds"] = round(time.monotonic() - started, 3)
    result["warnings"] = req.warnings
    return result


def _stage(repo: Repository, dump, identities: list, req: PostgresRestore, progress) -> Path:
    folder = Path(req.staging_dir or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    need = int(dump.raw_size * 1.02) + (16 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise LocalResourceError(
            f"Staging the dump for a parallel restore needs {need >> 20} MiB in {folder}, only {free >> 20} MiB free.",
            hint="Free space, point --staging-dir at a larger disk, or restore with --jobs 1 (streams, stages nothing).",
        )
    fd, name = tempfile.mkstemp(dir=folder, prefix="posterity-restore-", suffix=".pgdump")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            repo.read_artifact(dump, Tap(fh, progress), identities)
    except OSError as exc:
        path.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise LocalResourceError(
                f"The disk holding {folder} filled up while staging the dump; the staged file was removed.",
                hint="Free space, point --staging-dir at a larger disk, or restore with --jobs 1.",
            ) from exc
        raise LocalResourceError(f"Writing the staged dump in {folder} failed: {exc.strerror}.") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    # Streamed dumps lack data offsets, which makes pg_restore -j load tables one by one.
    from .archive_toc import add_data_offsets

    add_data_offsets(path)
    return path


def _run(argv: list[str], env: dict[str, str], stdin) -> None:
    proc = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise RestoreFailed(f"pg_restore failed (exit {proc.returncode}): {' | '.join(lines[-5:])}")


def _drop(dsn: str, dbname: str) -> None:
    try:
        with _maintenance_conn(dsn) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
    except Exception as exc:
        log.error("Could not drop the partly restored database %s: %s", dbname, exc)


def check_row_counts(dsn: str, dbname: str, expected: dict[str, int]) -> dict[str, Any]:
    """Compare per-table row counts with those recorded at backup time."""
    actual: dict[str, int] = {}
    with connect(dsn, dbname=dbname) as conn:
        for schema, table in conn.execute(USER_TABLES).fetchall():
            q = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            row = conn.execute(q).fetchone()
            actual[f"{schema}.{table}"] = int(row[0]) if row else 0
    mismatches = {
        t: {"expected": n, "actual": actual.get(t)} for t, n in expected.items() if actual.get(t) != n
    }
    if mismatches:
        raise RestoreFailed(f"Row counts differ from the backup's: {mismatches}.")
    return {"tables": len(actual), "rows": sum(actual.values()), "matched": len(expected)}
