"""``posterity restore SOURCE REF …``."""

from __future__ import annotations

from pathlib import Path

import click

from .main import json_option, pass_state
from .render import BarProgress, emit_json, human_duration, human_size


@click.command("restore")
@click.argument("source")
@click.argument("ref", default="latest")
@click.option("--to-database", help="postgres: database to restore into (created if missing; must be empty unless --clean).")
@click.option("--target-dsn", envvar="POSTERITY_TARGET_DSN", help="postgres: restore onto another server (default: the source's server). Env: POSTERITY_TARGET_DSN.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True, help="postgres: parallel pg_restore jobs (stages the dump on local disk when > 1).")
@click.option("--clean", is_flag=True, help="postgres: replace objects in a non-empty target database.")
@click.option("--with-roles", is_flag=True, help="postgres: also restore roles and tablespaces (pg_dumpall globals).")
@click.option("--no-owner", is_flag=True, help="postgres: do not restore ownership and privileges.")
@click.option("--check-counts", is_flag=True, help="postgres: compare row counts with those recorded at backup time.")
@click.option("--staging-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder for staged files (default: [general] staging_dir or TMPDIR).")
@click.option("--identity", "identity_file", type=click.Path(dir_okay=False), envvar="POSTERITY_IDENTITY_FILE", help="age identity file (default: [encryption] identity_file).")
@json_option
@pass_state
def restore(state, source: str, ref: str, to_database: str | None, target_dsn: str | None, jobs: int,
            clean: bool, with_roles: bool, no_owner: bool, check_counts: bool, staging_dir: Path | None,
            identity_file: str | None) -> None:
    """Restore backup REF (an id, unique prefix, or 'latest') of SOURCE.

    \b
    Examples:
      posterity restore db latest --to-database posters_restored
      posterity restore db 20240115T020000Z-ab12 --to-database posters --clean --jobs 4
    """
    ctx = state.context()
    cfg = ctx.config.source(source)
    if cfg.kind == "postgres":
        if not to_database:
            raise click.UsageError("postgres restores need --to-database NAME.")
        from ..operations.restore import restore_postgres

        result = restore_postgres(
            ctx, source, ref, to_database=to_database, jobs=jobs, clean=clean, with_roles=with_roles,
            no_owner=no_owner, target_dsn=target_dsn, staging_dir=staging_dir, check_counts=check_counts,
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
        for w in result.get("warnings", []):
            click.echo(f"warning: {w}", err=True)
        return
    raise click.UsageError(f"Restore of kind {cfg.kind!r} is not supported by this version.")


def register(cli: click.Group) -> None:
    cli.add_command(restore)
