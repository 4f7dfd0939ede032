"""The PostgreSQL drill: restore into a throwaway target, count rows, run the user's checks.

Targets (``[sources.NAME] drill``):
- ``temp-cluster`` (default): a private cluster in ``$TMPDIR`` started from the local server
  binaries (``posterity.pgcluster.TempCluster``), roles restored first from the backup's globals —
  the same steps as recovering onto a new server, so a restore that only works on the old
  server fails the drill;
- ``scratch-db``: a new database ``posterity_drill_<hex>`` on the source's own server
  (needs CREATEDB), restored without ownership (``--no-owner``: the backup's login need not
  be a superuser), dropped afterwards.

``restore_seconds`` is the wall time of the restore itself (download, decrypt, decompress,
pg_restore) — the recovery time objective actually achieved. Target setup and the checks
are reported separately in ``total_seconds``.
"""

from __future__ import annotations

import fnmatch
import secrets
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from ..errors import PosterityError, RestoreFailed, RestoreTargetError
from .drill import DrillRun
from .drill_report import CheckResult, range_check


def drill_postgres(run: DrillRun) -> None:
    from .restorers.postgres import RESTORER, PostgresRestoreRequest

    cfg = run.config
    report = run.report
    db = f"posterity_drill_{secrets.token_hex(4)}"
    with ExitStack() as cleanup:
        if cfg.drill == "temp-cluster":
            dsn = _start_cluster(run, cleanup)
            with_roles = bool(run.manifest.artifacts_of_kind("pg_dumpall-globals"))
            no_owner = False
        else:
            dsn = cfg.dsn.get_secret_value()
            with_roles = False
            no_owner = True  # the drill's login may create a database but not give objects away
            report.target = f"scratch database {db} on the source's server"
            cleanup.callback(_drop_scratch, run, dsn, db)
        req = PostgresRestoreRequest(
            to_database=db,
            target_dsn=dsn,
            # A split backup loads its archives in parallel (None: cfg.jobs, else the cores); one
            # archive streams (jobs > 1 would stage it on disk).
            jobs=None if run.manifest.artifacts_of_kind("pg_dump-custom-schema") else 1,
            with_roles=with_roles,
            no_owner=no_owner,
            # A split backup stages its schema archive in $TMPDIR, as drills always did (a restore
            # uses [general] staging_dir).
            staging_dir=Path(tempfile.gettempdir()),
        )
        dump = run.manifest.artifacts_of_kind("pg_dump-custom")
        run.progress.start(
            f"drill {run.manifest.source} {run.manifest.id}", dump[0].raw_size if dump else None
        )
        t0 = time.monotonic()
        try:
            # The kind's restorer, without the guard: the drill has its own audit record and report.
            result = RESTORER.run(run.ctx, run.manifest.source, run.manifest, run.identities, req, run.progress)
        finally:
            run.progress.stop()
        report.restore_seconds = round(time.monotonic() - t0, 3)
        report.bytes = int(result.bytes or 0)
        report.warnings.extend(result.warnings)
        report.checks.append(_row_counts(run, dsn, db))
        report.checks.extend(_user_checks(run, dsn, db))


def _start_cluster(run: DrillRun, cleanup: ExitStack) -> str:
    from ..pgcluster import ClusterError, TempCluster

    try:
        # In TMPDIR, not staging_dir: as root the cluster runs as the postgres user, who must
        # be able to reach the folder, and a private staging folder often is not reachable.
        cluster = TempCluster()
        cleanup.callback(_cleanup_cluster, run, cluster)
        cluster.start()
    except ClusterError as exc:
        raise RestoreTargetError(
            f"Could not start a temporary PostgreSQL cluster for the drill: {str(exc).splitlines()[0]}",
            hint="Install the PostgreSQL server package (apt-get install postgresql), or set "
            'drill = "scratch-db" to drill on the source\'s own server.',
        ) from exc
    run.report.target = (
        f"temporary cluster in {cluster.base_dir} (PostgreSQL from {cluster.bin_dir}) "
        f"on port {cluster.port}"
    )
    return cluster.dsn("postgres")


def _cleanup_cluster(run: DrillRun, cluster) -> None:
    try:
        cluster.cleanup()
        run.report.cleanup = "temporary cluster stopped and removed"
    except Exception as exc:  # never hide the drill's own result behind a cleanup failure
        run.report.cleanup = f"FAILED to remove the temporary cluster: {exc}"
        run.report.warnings.append(run.report.cleanup)


def _drop_scratch(run: DrillRun, dsn: str, db: str) -> None:
    from psycopg import sql

    from ..sources.postgres.restore import _maintenance_conn

    try:
        with _maintenance_conn(dsn) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db))
            )
        run.report.cleanup = f"scratch database {db} dropped"
    except (PosterityError, psycopg.Error) as exc:
        run.report.cleanup = f"FAILED to drop the scratch database {db}: {exc}"
        run.report.warnings.append(run.report.cleanup)


def _row_counts(run: DrillRun, dsn: str, db: str) -> CheckResult:
    from ..sources.postgres.restore import check_row_counts

    expected = dict(run.manifest.facts.get("row_counts") or {})
    if not expected:
        return CheckResult(
            "row counts", True, "the backup recorded no row counts (row_counts = off); skipped"
        )
    # Tables whose data was deliberately not dumped restore empty.
    excluded = [p for p in run.config.exclude_table_data]
    skipped = [
        t
        for t in expected
        if any(fnmatch.fnmatch(t, p) or fnmatch.fnmatch(t.split(".", 1)[1], p) for p in excluded)
    ]
    for t in skipped:
        expected.pop(t)
    try:
        got = check_row_counts(dsn, db, expected)
    except RestoreFailed as exc:
        return CheckResult("row counts", False, exc.message)
    detail = f"{got['matched']} tables, {got['rows']} rows, as recorded at backup time"
    if skipped:
        detail += f" ({len(skipped)} table(s) with excluded data not compared)"
    return CheckResult("row counts", True, detail, got["rows"])


def _user_checks(run: DrillRun, dsn: str, db: str) -> list[CheckResult]:
    from ..sources.postgres.tools import connect

    out: list[CheckResult] = []
    if not run.config.checks:
        return out
    with connect(dsn, dbname=db) as conn:
        conn.execute("set default_transaction_read_only = on")
        conn.execute("set statement_timeout = '120s'")
        for chk in run.config.checks:
            name = chk.description or chk.sql
            try:
                row = conn.execute(chk.sql).fetchone()
                value = float(row[0]) if row and row[0] is not None else None
            except (psycopg.Error, TypeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                out.append(CheckResult(name, False, f"the query failed: {first}"))
                continue
            if value is None:
                out.append(CheckResult(name, False, "the query returned no number"))
                continue
            out.append(range_check(name, value, chk))
    return out
