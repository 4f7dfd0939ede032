"""``posterity restore SOURCE REF …``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import json_option, pass_state
from .render import BarProgress, emit_json, human_duration, human_size


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
@click.option("--staging-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder for staged files (default: [general] staging_dir or TMPDIR).")
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
def restore(state, source: str | None, ref: str, to_database: str | None, target_dsn: str | None, jobs: int | None,
            clean: bool, with_roles: bool, overwrite_roles: bool, no_owner: bool, check_counts: bool, staging_dir: Path | None,
            identity_file: str | None, to: Path | None = None, paths: tuple[str, ...] = (),
            overwrite: bool = False, point: str | None = None, meili_indexes: tuple[str, ...] = (),
            meili_all: bool = False, meili_as: str | None = None, meili_replace: bool = False,
            meili_snapshot_to: Path | None = None, meili_dump_to: Path | None = None,
            pitr_dir: Path | None = None, pitr_time: str | None = None, pitr_lsn: str | None = None,
            pitr_xid: str | None = None, pitr_name: str | None = None, pitr_action: str = "pause",
            pitr_timeline: str | None = None, pitr_start: bool = False, pitr_port: int | None = None,
            pitr_force: bool = False, pitr_verify: bool = False, pitr_archive_mode: str = "off") -> None:
    """Restore backup REF (an id, unique prefix, or 'latest') of SOURCE.

    \b
    Examples:
      posterity restore db latest --to-database posters_restored
      posterity restore db 20240115T020000Z-ab12 --to-database posters --clean --jobs 4
      posterity restore config latest --to /var/restore --path etc/nginx
      posterity restore search latest --index posters --replace
      posterity restore --point latest --to-database posters_restored --to /var/restore
    """
    if point is not None:
        if source is not None:
            raise click.UsageError("Give either SOURCE [REF] or --point, not both.")
        from .files_restore import run_point_restore

        pg = {"jobs": jobs, "clean": clean, "with_roles": with_roles, "overwrite_roles": overwrite_roles, "no_owner": no_owner, "target_dsn": target_dsn,
              "staging_dir": staging_dir, "check_counts": check_counts}
        return run_point_restore(state, point, to_database=to_database, to=to, overwrite=overwrite, postgres=pg,
                                 identity_file=identity_file, replace_indexes=meili_replace)
    if source is None:
        raise click.UsageError("Name the SOURCE to restore, or give --point ID.")
    ctx = state.context()
    cfg = ctx.config.source(source)
    if cfg.kind == "files":
        from .files_restore import run_files_restore

        return run_files_restore(state, source, ref, to=to, paths=paths, overwrite=overwrite,
                                 identity_file=identity_file)
    if cfg.kind == "postgres":
        if not to_database:
            raise click.UsageError("postgres restores need --to-database NAME.")
        from ..operations.restore import restore_postgres

        result = restore_postgres(
            ctx, source, ref, to_database=to_database, jobs=jobs, clean=clean, with_roles=with_roles,
            overwrite_roles=overwrite_roles, no_owner=no_owner, target_dsn=target_dsn, staging_dir=staging_dir, check_counts=check_counts,
            identity_file=identity_file, progress=BarProgress(not state.json),
        )
        if state.json:
            emit_json(result)
            return
        click.echo(f"restored {source} backup {result['backup']} into {result['server']} "
                   f"({human_size(result['bytes'])} in {human_duration(result['seconds'])}, jobs={result['jobs']})")
        if "row_counts" in result:
            rc = result["row_counts"]
            click.echo(f"row counts match the backup: {rc['tables']} tables, {rc['rows']} rows")
        for n in result.get("notes", []):
            click.echo(f"note: {n}")
        for w in result.get("warnings", []):
            click.echo(f"warning: {w}", err=True)
        return
    if cfg.kind == "meilisearch":
        from .meilisearch import restore as run_meilisearch_restore

        return run_meilisearch_restore(
            state, source, ref, indexes=meili_indexes, all_indexes=meili_all, as_name=meili_as,
            replace=meili_replace, snapshot_to=meili_snapshot_to, dump_to=meili_dump_to,
            check_counts=check_counts, identity_file=identity_file,
        )
    if cfg.kind == "postgres-physical":
        from .pitr import run_pitr_restore

        return run_pitr_restore(
            state, source, ref, to_directory=pitr_dir, target_time=pitr_time, target_lsn=pitr_lsn,
            target_xid=pitr_xid, target_name=pitr_name, target_action=pitr_action, target_timeline=pitr_timeline,
            start=pitr_start, port=pitr_port, force=pitr_force, verify=pitr_verify, identity_file=identity_file,
            archive_mode=pitr_archive_mode,
        )
    raise click.UsageError(f"Restore of kind {cfg.kind!r} is not supported by this version.")


def register(cli: click.Group) -> None:
    cli.add_command(restore)
