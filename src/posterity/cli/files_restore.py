"""Rendering for ``posterity restore`` of files backups and of restore points.

Called from ``cli/restore.py`` (which owns the options); no command of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .render import BarProgress, emit_json, human_duration, human_size


def _files_line(source: str, r: dict[str, Any]) -> str:
    what = f"{r['files']} files, {r['dirs']} folders, {r['symlinks']} symlinks, {human_size(r['bytes'])}"
    sel = f" (only {', '.join(r['paths'])})" if r.get("paths") else ""
    over = f"; replaced {r['overwritten']} existing" if r.get("overwritten") else ""
    owners = "" if r.get("owners") else "; owners not restored (not running as root)"
    return f"restored {source} backup {r['backup']} into {r['target']}{sel}: {what} in {human_duration(r['seconds'])}{over}{owners}"


def run_files_restore(
    state,
    source: str,
    ref: str,
    *,
    to: Path | None,
    paths: tuple[str, ...],
    overwrite: bool,
    identity_file: str | None,
) -> None:
    from ..operations.restore_files import restore_files

    result = restore_files(
        state.context(),
        source,
        ref,
        to=to,
        paths=list(paths),
        overwrite=overwrite,
        identity_file=identity_file,
        progress=BarProgress(not state.json),
    )
    if state.json:
        emit_json(result)
        return
    click.echo(_files_line(source, result))


def run_point_restore(
    state,
    ref: str,
    *,
    to_database: str | None,
    to: Path | None,
    overwrite: bool,
    postgres: dict[str, Any],
    identity_file: str | None,
    replace_indexes: bool = False,
) -> None:
    from ..operations.points import PointRestore, restore_point

    req = PointRestore(
        to_database=to_database,
        to=to,
        overwrite=overwrite,
        postgres=postgres,
        identity_file=identity_file,
        replace_indexes=replace_indexes,
    )
    result = restore_point(state.context(), ref, req, progress=lambda: BarProgress(not state.json))
    if state.json:
        emit_json(result)
        return
    for source in result["order"]:
        r = result["restored"][source]
        if "database" in r:
            click.echo(
                f"restored {source} backup {r['backup']} into {r['server']} "
                f"({human_size(r['bytes'])} in {human_duration(r['seconds'])})"
            )
            for w in r.get("warnings", []):
                click.echo(f"warning: {source}: {w}", err=True)
        elif "indexes" in r:
            names = ", ".join(
                f"{row['target']} ({row['documents']} documents)" for row in r["indexes"]
            )
            click.echo(f"restored {source} backup {r['backup']}: {names}")
            for w in r.get("warnings", []):
                click.echo(f"warning: {source}: {w}", err=True)
        else:
            click.echo(_files_line(source, r))
    click.echo(f"restore point {result['point']} restored ({len(result['order'])} sources)")
