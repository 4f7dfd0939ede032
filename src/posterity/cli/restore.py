"""``posterity restore SOURCE REF …``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .common import json_option, pass_state
from .render import BarProgress


@click.command("restore")
@click.argument("source", required=False)
@click.argument("ref", default="latest")
@click.option("--to-database", help="postgres: database to restore into (created if missing; must be empty unless --clean).")
@click.option("--target-dsn", envvar="POSTERITY_TARGET_DSN", help="postgres: restore onto another server (default: the source's server). Env: POSTERITY_TARGET_DSN.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="postgres: parallel pg_restore jobs (default: the source's jobs, else the cores, at most 8, for a split backup; 1 for a single-archive one, which is staged on local disk when > 1).")
@click.option("--clean", is_flag=True, help="postgres: replace a non-empty target database: restore beside it, then switch names; the old one is kept as NAME_before_TIME.")
@click.option("--with-roles", is_flag=True, help="postgres: also create the backup's roles and tablespaces that the server lacks (pg_dumpall globals); existing roles are left as they are.")
@click.option("--overwrite-roles", is_flag=True, help="postgres: with --with-roles, also reset existing roles to the backup's (passwords, LOGIN, attributes, memberships).")
@click.option("--no-owner", is_flag=True, help="postgres: do not restore ownership and privileges.")
@click.option("--check-counts", is_flag=True, help="postgres: compare row counts with those recorded at backup time. meilisearch: compare the live document counts with the backup's.")
@click.option("--staging-dir", type=click.Path(file_okay=False, path_type=Path), help="postgres: folder for staged files (default: [general] staging_dir or TMPDIR).")
@click.option("--identity", "identity_file", type=click.Path(dir_okay=False), envvar="POSTERITY_IDENTITY_FILE", help="age identity file (default: [encryption] identity_file).")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), help="files: folder to restore into (files land at DIR/<original path>; default: the source's restore_to).")
@click.option("--path", "paths", multiple=True, help="files: restore only this stored path and what is under it (e.g. etc/nginx). Repeatable.")
@click.option("--overwrite", is_flag=True, help="files: replace files that already exist in the target folder.")
@click.option("--point", help="Restore a restore point (an id, unique prefix or 'latest'): every source in it, each to its target.")
@click.option("--index", "meili_indexes", multiple=True, help="meilisearch: restore this index (repeatable) through a temporary index and an atomic swap.")
@click.option("--all", "meili_all", is_flag=True, help="meilisearch: restore every index of the backup (one atomic swap for all).")
@click.option("--as", "meili_as", help="meilisearch: restore the one --index under this name instead (refused if it exists, unless --replace).")
@click.option("--replace", "meili_replace", is_flag=True, help="meilisearch: replace existing target indexes (swapped atomically; the live index serves until then).")
@click.option("--snapshot-to", "meili_snapshot_to", type=click.Path(path_type=Path), help="meilisearch: write the backup's snapshot to PATH and print (or run restart_command for) the import steps.")
@click.option("--dump-to", "meili_dump_to", type=click.Path(path_type=Path), help="meilisearch: write the backup's dump to PATH and print (or run restart_command for) the import steps.")
@click.option("--to-directory", "pitr_dir", type=click.Path(file_okay=False, path_type=Path), help="postgres-physical: data directory to restore into (empty or new, unless --force).")
@click.option("--target-time", "pitr_time", help="postgres-physical: recover to this moment, e.g. '2024-01-15 10:42:00+00' (UTC when no offset).")
@click.option("--target-lsn", "pitr_lsn", help="postgres-physical: recover to this WAL position, e.g. 0/3000158.")
@click.option("--target-xid", "pitr_xid", help="postgres-physical: recover to the commit of this transaction id.")
@click.option("--target-name", "pitr_name", help="postgres-physical: recover to this restore point (pg_create_restore_point).")
@click.option("--target-action", "pitr_action", type=click.Choice(["pause", "promote", "shutdown"]), default="pause", show_default=True, help="postgres-physical: what the server does at the target.")
@click.option("--target-timeline", "pitr_timeline", help="postgres-physical: the timeline to follow: current (the backup's), latest (the newest archived, even one a restored copy made), or a number. Default: the newest timeline the source's base backups were taken on.")
@click.option("--start", "pitr_start", is_flag=True, help="postgres-physical: start PostgreSQL on the restored directory and wait until the target is reached.")
@click.option("--port", "pitr_port", type=click.IntRange(1, 65535), help="postgres-physical: port for --start (default: a free one).")
@click.option("--force", "pitr_force", is_flag=True, help="postgres-physical: replace a stopped PostgreSQL data directory (kept aside until the restore succeeded); never any other non-empty folder.")
@click.option("--archive-mode", "pitr_archive_mode", type=click.Choice(["off", "preserve"]), default="off", show_default=True, help="postgres-physical: off: the restored server does not archive (a copy never writes into the source's archive); preserve: keep the backup's archive settings (a real failover).")
@click.option("--verify-files", "pitr_verify", is_flag=True, help="postgres-physical: check every restored file with pg_verifybackup against the backup_manifest.")
@json_option
@pass_state
def restore(state, source: str | None, ref: str, point: str | None, identity_file: str | None, **opts: Any) -> None:
    """Restore backup REF (an id, unique prefix, or 'latest') of SOURCE.

    \b
    Examples:
      posterity restore db latest --to-database posters_restored
      posterity restore db 20240115T020000Z-ab12 --to-database posters --clean --jobs 4
      posterity restore config latest --to /var/restore --path etc/nginx
      posterity restore search latest --index posters --replace
      posterity restore --point latest --to-database posters_restored --to /var/restore
    """
    from ..operations.restore import OptionError, restorer, restorers
    from ..operations.restore import restore as run

    given = [name for name in opts if click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE]
    opts["identity_file"] = identity_file
    if point is not None:
        if source is not None:
            raise click.UsageError("Give either SOURCE [REF] or --point, not both.")
        allowed = {o for r in restorers().values() if r.point_order is not None for o in r.point_options}
        _refuse([g for g in given if g not in allowed], "restore --point")
        from .restore_render import run_point_restore

        return run_point_restore(state, point, opts)
    if source is None:
        raise click.UsageError("Name the SOURCE to restore, or give --point ID.")
    ctx = state.context()
    kind = ctx.config.source(source).kind
    r = restorer(kind)
    _refuse([g for g in given if g not in r.options], f"{kind} restores ({source})")
    try:
        request = r.request(source, opts)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None
    from .restore_render import render

    render(state, source, run(ctx, source, ref, request, progress=BarProgress(not state.json)))


def _refuse(wrong: list[str], what: str) -> None:
    """A usage error naming the kinds each of ``wrong`` (parameter names) applies to."""
    if not wrong:
        return
    from ..operations.restore import restorers

    params = {p.name: p for p in restore.params}
    lines = []
    for name in wrong:
        kinds = [k for k, r in sorted(restorers().items()) if name in r.options]
        flag = params[name].opts[0] if name in params else name
        lines.append(f"{flag} applies to {', '.join(kinds) or 'no'} restores, not to {what}.")
    raise click.UsageError(" ".join(lines))


def register(cli: click.Group) -> None:
    cli.add_command(restore)
