"""`posterity doctor` for PostgreSQL sources (logical and physical).

Logical: the server answers, pg_dump fits its version, and the role can read every table and
sequence pg_dump will read. Physical: the server answers, pg_basebackup fits, the role has
REPLICATION, ``wal_level``; with ``wal = "archive"`` also ``archive_mode``, an
``archive_command`` that runs Posterity — **run, as the data directory's owner, with the
postmaster's own environment** and ``POSTERITY_ARCHIVE_PROBE`` set, so it loads the
configuration and reaches the repository exactly as PostgreSQL will but stores nothing —
and the archiving alerts (failing, ``.ready`` backlog, ``pg_wal``'s disk); with
``wal = "stream"`` the slot, its lag and ``max_slot_wal_keep_size``.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..localpg.owner import as_owner, owner_of, switching
from ..repository.probe import PROBE_ENV
from .context import Context
from .doctor import FAIL, OK, WARN, Check, guarded

PROBE_TIMEOUT = 20
FAKE_SEGMENT = "000000FF000000FF000000FF"  # never a real one: a push of it would show


def _server(dsn: str) -> tuple[int, str]:
    from ..sources.postgres.tools import connect

    with connect(dsn) as conn:
        row = conn.execute("select current_setting('server_version_num')::int, current_setting('server_version')"
                           ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _client(tool: str, major: int, bin_dir: Path | None) -> Check:
    from ..sources.postgres.tools import require_client

    path, version = require_client(tool, major, bin_dir)
    return Check(tool, OK, f"{path} ({version}) fits server {major}")


def logical(ctx: Context, name: str, cfg: Any) -> Iterator[Check]:
    dsn = cfg.dsn.get_secret_value()
    reach = guarded("postgres reachable", lambda: _reach(dsn))
    yield from reach
    if reach[0].status == FAIL:
        return
    major = _server(dsn)[0] // 10000
    yield from guarded("pg_dump", lambda: _client("pg_dump", major, cfg.bin_dir))
    yield from guarded("table privileges", lambda: _readable(dsn))


def _reach(dsn: str) -> Check:
    from ..sources.postgres.tools import describe

    _num, version = _server(dsn)
    return Check("postgres reachable", OK, f"{describe(dsn)}: PostgreSQL {version}")


def _readable(dsn: str) -> Check:
    from ..sources.postgres.tools import connect

    with connect(dsn) as conn:
        rows = conn.execute(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'p', 'm', 'S') and n.nspname not in ('pg_catalog', 'information_schema') "
            "and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%' "
            "and not has_table_privilege(c.oid, 'SELECT') order by 1").fetchall()
        user = conn.execute("select current_user").fetchone()
    if rows:
        names = [r[0] for r in rows]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return Check("table privileges", FAIL, f"role {user[0] if user else '?'} cannot read {shown}; pg_dump would fail",
                     f"GRANT pg_read_all_data TO {user[0] if user else '<role>'}; (PostgreSQL 14+), or GRANT SELECT "
                     "on those tables and sequences.")
    return Check("table privileges", OK, "the role can read every table and sequence")


def physical(ctx: Context, name: str, cfg: Any) -> Iterator[Check]:
    from ..sources.postgres.tools import connect

    dsn = cfg.dsn.get_secret_value()
    reach = guarded("postgres reachable", lambda: _reach(dsn))
    yield from reach
    if reach[0].status == FAIL:
        return
    with connect(dsn) as conn:
        row = conn.execute(
            "select current_setting('server_version_num')::int, current_setting('wal_level'), "
            "current_setting('archive_mode'), (select setting from pg_settings where name = 'archive_command'), "
            "(select setting from pg_settings where name = 'archive_library'), "
            "(select rolreplication or rolsuper from pg_roles where rolname = current_user), current_user, "
            "(select setting from pg_settings where name = 'data_directory')").fetchone()
    assert row is not None
    version_num, wal_level, archive_mode, archive_command, archive_library, can_replicate, user, data_dir = row
    yield from guarded("pg_basebackup", lambda: _client("pg_basebackup", version_num // 10000, cfg.bin_dir))
    if can_replicate:
        yield Check("replication privilege", OK, f"role {user} has REPLICATION")
    else:
        yield Check("replication privilege", FAIL, f"role {user} has no REPLICATION privilege; pg_basebackup needs it",
                    f"ALTER ROLE {user} REPLICATION; and a 'replication' line for it in pg_hba.conf.")
    if wal_level in ("replica", "logical"):
        yield Check("wal_level", OK, wal_level)
    else:
        yield Check("wal_level", FAIL, f"wal_level = {wal_level}: no base backup or archiving is possible",
                    "Set wal_level = replica in postgresql.conf and restart PostgreSQL.")
    data_dir = str(cfg.data_directory or data_dir or "") or None
    if cfg.wal == "stream":
        yield from guarded("replication slot", lambda: _slot(dsn, cfg.slot_name(name)))
        return
    if archive_mode == "off":
        yield Check("archive_mode", FAIL, "archive_mode = off: no WAL is archived, base backups cannot be restored",
                    f"Set archive_mode = on and archive_command = 'posterity wal push --source {name} %p', restart.")
    else:
        yield Check("archive_mode", OK, archive_mode)
    yield from guarded("archive_command", lambda: _archive_command(name, archive_command, archive_library, data_dir))
    yield from guarded("archiving", lambda: _archiving(ctx, name, cfg, dsn))


def _archive_command(source: str, command: str | None, library: str | None, data_dir: str | None) -> list[Check]:
    want = f"posterity wal push --source {source} %p"
    if library:
        return [Check("archive_command", FAIL, f"archive_library = {library!r} is set, so archive_command is ignored",
                      f"Unset archive_library and set archive_command = '{want}'.")]
    if command is None:
        return [Check("archive_command", WARN, "this role cannot read archive_command",
                      "GRANT pg_read_all_settings TO the role (or run doctor with a superuser DSN) to check it.")]
    if not command.strip():
        return [Check("archive_command", FAIL, "archive_command is empty: WAL is not archived", f"Set it to '{want}'.")]
    if "posterity" not in command:
        return [Check("archive_command", FAIL, f"archive_command does not run Posterity: {command!r}",
                      f"Set archive_command = '/usr/local/bin/{want}'.")]
    checks = [Check("archive_command", OK, command)]
    if "--source" not in command and "-s " not in command:
        checks[0] = Check("archive_command", WARN, f"{command!r} names no --source",
                          f"Fine with one postgres-physical source; name it to be safe: '{want}'.")
    checks.append(run_archive_command(command, data_dir))
    return checks


def run_archive_command(command: str, data_dir: str | None) -> Check:
    """Run ``command`` as the data directory's owner, in it, with the postmaster's environment
    (or a minimal one) plus ``POSTERITY_ARCHIVE_PROBE``: exit 0 proves PostgreSQL can run it."""
    name = "archive_command runs"
    if not data_dir:
        return Check(name, WARN, "the data directory is unknown (the role cannot read the data_directory "
                     "setting), so archive_command was not run",
                     "Set data_directory in the source (or GRANT pg_read_all_settings to the role).")
    if not os.path.isdir(data_dir):
        return Check(name, WARN, f"the data directory {data_dir} is not on this host; archive_command was not run",
                     "Run `posterity doctor` on the database server (as root) to run archive_command as its owner.")
    st = os.stat(data_dir)
    owner = owner_of(Path(data_dir))
    if os.geteuid() not in (0, st.st_uid):
        return Check(name, WARN, f"archive_command runs as {owner.pw_name}; this user cannot switch to it, not run",
                     "Run `posterity doctor` as root (or as the data directory's owner).")
    env, where = _postmaster_env(Path(data_dir), owner)
    env[PROBE_ENV] = "1"
    line = command.replace("%%", "\0").replace("%p", f"pg_wal/{FAKE_SEGMENT}").replace("%f", FAKE_SEGMENT)
    line = line.replace("%r", FAKE_SEGMENT).replace("\0", "%")
    kwargs: dict[str, Any] = as_owner(owner, groups=True) if switching(owner) else {}
    try:
        proc = subprocess.run(["/bin/sh", "-c", line], cwd=data_dir, env=env, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, check=False, **kwargs)
    except subprocess.TimeoutExpired:
        return Check(name, FAIL, f"archive_command did not finish in {PROBE_TIMEOUT} s as {owner.pw_name}",
                     "Something in it waits (the repository unreachable?); run it by hand as that user.")
    if proc.returncode == 0:
        return Check(name, OK, f"as {owner.pw_name} with {where}: configuration loaded and repository reached")
    out = " ".join((proc.stderr or proc.stdout).split())[:300]
    hint = "Fix what it says, then run `posterity doctor` again."
    if proc.returncode in (126, 127):
        hint = (f"{owner.pw_name} cannot execute it (exit {proc.returncode}): install Posterity where every user can "
                "run it (`scripts/install`, /opt/posterity) and use /usr/local/bin/posterity in archive_command.")
    return Check(name, FAIL, f"as {owner.pw_name} with {where} it exits {proc.returncode}: {out}", hint)


def _postmaster_env(data_dir: Path, owner: pwd.struct_passwd) -> tuple[dict[str, str], str]:
    """The running postmaster's own environment (what archive_command inherits), else a minimal one."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        return env, "the postmaster's environment"
    except (OSError, ValueError, IndexError):
        return ({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": owner.pw_dir, "LANG": "C.UTF-8",
                 "USER": owner.pw_name}, "a minimal environment (the postmaster's was not readable)")


def _archiving(ctx: Context, name: str, cfg: Any, dsn: str) -> list[Check]:
    from ..sources.postgres import archiving

    s, alerts = archiving.check(dsn, cfg, ctx.state_dir, name)
    by_kind = {a.kind: a for a in alerts}
    out = []
    if "failing" in by_kind:
        a = by_kind["failing"]
        out.append(Check("archiver", FAIL, a.message, a.hint))
    elif s.failing:
        out.append(Check("archiver", WARN, f"the last archive attempt failed ({s.last_failed_wal}; "
                         f"{s.failed_count} failures in all)", "Read PostgreSQL's log for archive_command's error."))
    else:
        out.append(Check("archiver", OK, f"not failing ({s.failed_count} failures since the statistics reset)"))
    if "backlog" in by_kind:
        out.append(Check(".ready backlog", FAIL, by_kind["backlog"].message, by_kind["backlog"].hint))
    elif s.ready is None:
        out.append(Check(".ready backlog", WARN, "; ".join(s.notes) or "unknown",
                         "GRANT pg_monitor to the role, or run doctor on the database server."))
    else:
        out.append(Check(".ready backlog", OK, f"{s.ready} segment(s) waiting (alert at {cfg.ready_alert})"))
    used = s.wal_disk_used_fraction
    if "disk" in by_kind:
        out.append(Check("pg_wal disk", FAIL, by_kind["disk"].message, by_kind["disk"].hint))
    elif used is None:
        out.append(Check("pg_wal disk", WARN, "cannot see pg_wal's disk from this host",
                         "Run doctor on the database server, or set data_directory in the source."))
    else:
        out.append(Check("pg_wal disk", OK, f"{used:.0%} used, {(s.wal_disk_free or 0) >> 20} MiB free "
                         f"(alert at {cfg.wal_disk_alert}%)"))
    return out


def _slot(dsn: str, slot: str) -> list[Check]:
    from ..sources.postgres.tools import connect

    with connect(dsn) as conn:
        row = conn.execute(
            "select active, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
            "current_setting('max_slot_wal_keep_size') from pg_replication_slots where slot_name = %s",
            (slot,)).fetchone()
        keep = conn.execute("select current_setting('max_slot_wal_keep_size')").fetchone()
    out = []
    if keep and keep[0] in ("-1", "-1MB"):
        out.append(Check("max_slot_wal_keep_size", WARN, "unlimited: a stopped streamer lets the slot keep WAL until "
                         "the disk is full", "Set max_slot_wal_keep_size (e.g. 10GB) in postgresql.conf."))
    elif keep:
        out.append(Check("max_slot_wal_keep_size", OK, keep[0]))
    if row is None:
        out.append(Check("replication slot", FAIL, f"slot {slot!r} does not exist: no WAL is streamed",
                         "Start `posterity wal stream` (or the daemon); it creates the slot."))
        return out
    active, wal_status, lag, _ = row
    if wal_status == "lost":
        out.append(Check("replication slot", FAIL, f"slot {slot!r} is invalidated (WAL removed before streaming)",
                         "Take a new base backup after `posterity wal drop-slot` and a streamer restart."))
    elif not active:
        out.append(Check("replication slot", WARN, f"slot {slot!r} exists but no streamer uses it (lag {lag} bytes)",
                         "Start `posterity wal stream` or the daemon."))
    else:
        out.append(Check("replication slot", OK, f"slot {slot!r} active, lag {lag} bytes, wal_status {wal_status}"))
    return out


__all__ = ["logical", "physical", "run_archive_command"]
