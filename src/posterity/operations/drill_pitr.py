"""The point-in-time recovery drill: a base backup and all WAL after it, recovered for real.

Into a throwaway directory in ``$TMPDIR``: the base backup is extracted and checked against
its backup_manifest (``pg_verifybackup``), every archived WAL segment up to the newest (and
the streaming snapshot after it) is fetched and verified, PostgreSQL is started on a free
loopback port and recovers to the end of the archive. Then:

- **recovery**: the server came up promoted, on which timeline, and which WAL position and
  last transaction time it replayed — the newest archived segment must have been reached;
- the source's ``[[sources.NAME.checks]]`` queries, each in its ``database``.

The copy gets ``archive_mode = off``: a drill promotes, and a promoted copy that archived
would put a new timeline into the source, which a later restore to latest would follow.
``restore_seconds`` runs from the first download to the server accepting connections: the
RTO of a point-in-time restore of this source, as measured. The directory and the server
are removed afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, SourceTimeout
from ..repository import walnames as wal
from .drill import DrillRun
from .drill_report import CheckResult, range_check


def drill_pitr(run: DrillRun) -> None:
    from ..sources.postgres.pitr_owner import os_owner
    from ..sources.postgres.pitr_plan import Target, plan_restore
    from ..sources.postgres.pitr_restore import PitrRequest, restore_pitr

    ctx, report = run.ctx, run.report
    if ctx.config_path is None:
        raise ConfigError("A point-in-time drill needs the configuration file's path (for restore_command).")
    identity_file = run.identity_file or ctx.config.encryption.identity_file
    parent = Path(tempfile.mkdtemp(prefix="posterity-drill-pitr-"))
    parent.chmod(0o711)  # the PostgreSQL OS user must reach the data directory inside
    target = parent / "data"
    report.target = f"temporary data directory {target}"
    try:
        plan = plan_restore(ctx.repo.wal(run.manifest.source), run.manifest, Target(), run.identities)
        req = PitrRequest(
            source=run.manifest.source, to_directory=target, target=Target(), config_path=Path(ctx.config_path).resolve(),
            identity_file=Path(identity_file).resolve() if identity_file else None, start=True, verify=True,
            bin_dir=run.config.bin_dir, extra_settings={"archive_mode": "off"},
        )
        run.progress.start(f"drill {run.manifest.source} {run.manifest.id}", None)
        t0 = time.monotonic()
        try:
            result = restore_pitr(ctx.repo, plan, run.identities, req, progress=run.progress.advance)
        finally:
            run.progress.stop()
        report.restore_seconds = round(time.monotonic() - t0, 3)
        report.bytes = int(result.get("base_bytes") or 0) + int(result.get("wal_bytes") or 0)
        report.warnings.extend(n for n in result.get("notes", []) if not n.startswith("pg_verifybackup"))
        report.checks.append(CheckResult("backup files", True, next(
            (n for n in result.get("notes", []) if n.startswith("pg_verifybackup")), "pg_verifybackup passed")))
        report.checks.append(_recovery_check(plan, result))
        owner = os_owner()
        mode = _psql(run, result, owner, "postgres", "select current_setting('archive_mode')")
        value = (mode.stdout.strip().splitlines() or [""])[-1]
        report.checks.append(CheckResult("archiving off in the copy", value == "off",
                                         f"archive_mode = {value or mode.stderr.strip()[:200]}"))
        report.checks.extend(_user_checks(run, result, owner))
    finally:
        _cleanup(run, parent, target)


def _recovery_check(plan, result: dict) -> CheckResult:
    replay = result.get("replay_lsn")
    detail = (f"{result.get('state')} on timeline {result.get('timeline')} after replaying "
              f"{len(plan.segments)} WAL segment(s){' and the streaming snapshot ' + plan.tail if plan.tail else ''} "
              f"to {replay or '?'} (last transaction {result.get('last_transaction') or result.get('replay_time') or 'none'})")
    if result.get("state") != "promoted":
        return CheckResult("recovery", False, f"recovery ended {result.get('state')}: {detail}")
    if plan.newest and replay:
        newest_start = wal.segno_of(plan.newest, plan.segment_size) * plan.segment_size
        if wal.parse_lsn(replay) < newest_start:
            return CheckResult("recovery", False, f"stopped before the newest archived segment {plan.newest}: {detail}")
    return CheckResult("recovery", True, detail, replay)


def _psql(run: DrillRun, result: dict, owner, database: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run one read-only query on the recovered server, over its socket, as its OS user."""
    from ..localpg import find_binary, psql

    bin_dir = find_binary("psql", None, run.config.bin_dir).parent
    return psql(bin_dir, owner, host=result["socket_dir"], port=int(result["port"]), dbname=database,
                commands=["set default_transaction_read_only = on; set statement_timeout = '120s'", sql],
                flags=("-X", "-At", "-v", "ON_ERROR_STOP=1"), timeout=CHECK_TIMEOUT)


CHECK_TIMEOUT = 180  # seconds a user check may run (its statement_timeout is 120 s)


def _user_checks(run: DrillRun, result: dict, owner) -> list[CheckResult]:
    out: list[CheckResult] = []
    if not run.config.checks:
        return out
    for chk in run.config.checks:
        name = chk.description or chk.sql
        try:
            proc = _psql(run, result, owner, chk.database, chk.sql)
        except SourceTimeout:  # a failed check, reported and stored like any other
            out.append(CheckResult(name, False, f"the query did not finish within {CHECK_TIMEOUT}s"))
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip() and ln.strip().upper() != "SET"]
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["failed"])[0]
            out.append(CheckResult(name, False, f"the query failed: {first}"))
            continue
        try:
            value = float(lines[-1].split("|")[0])
        except (IndexError, ValueError):
            out.append(CheckResult(name, False, "the query returned no number"))
            continue
        out.append(range_check(name, value, chk))
    return out


def _cleanup(run: DrillRun, parent: Path, target: Path) -> None:
    from ..localpg import find_binary, stop
    from ..sources.postgres.pitr_owner import os_owner

    try:
        if (target / "postmaster.pid").exists():
            bin_dir = find_binary("pg_ctl", None, run.config.bin_dir).parent
            with contextlib.suppress(SourceTimeout):
                stop(bin_dir, os_owner(), target, mode="immediate", timeout=60)
        shutil.rmtree(parent)
        run.report.cleanup = "temporary server stopped and its directory removed"
    except Exception as exc:  # never hide the drill's own result behind a cleanup failure
        run.report.cleanup = f"FAILED to remove {parent}: {exc}"
        run.report.warnings.append(run.report.cleanup)
