"""How ``posterity restore`` shows a result: by its type, one function per result type.

``cli/restore.py`` owns the options and calls the operation; this module prints (JSON: the
result's ``to_dict()``, exactly as before the results were typed).
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import click

from ..operations.restore_results import (
    FilesRestoreResult,
    MeilisearchCountsResult,
    MeilisearchFileResult,
    MeilisearchIndexesResult,
    PitrRestoreResult,
    PostgresRestoreResult,
)
from .render import BarProgress, emit_json, human_duration, human_size, table


def render(state: Any, source: str, result: Any) -> None:
    if state.json:
        emit_json(result.to_dict())
        if isinstance(result, MeilisearchCountsResult):
            _counts_verdict(result)
        return
    show(result, source)


@singledispatch
def show(result: Any, source: str) -> None:
    raise TypeError(f"no rendering for {type(result).__name__}")


@show.register
def _(r: PostgresRestoreResult, source: str) -> None:
    click.echo(f"restored {source} backup {r.backup} into {r.server} "
               f"({human_size(r.bytes)} in {human_duration(r.seconds)}, jobs={r.jobs})")
    if r.row_counts is not None:
        click.echo(f"row counts match the backup: {r.row_counts['tables']} tables, {r.row_counts['rows']} rows")
    for n in r.notes:
        click.echo(f"note: {n}")
    _warnings(r.warnings)


@show.register
def _(r: FilesRestoreResult, source: str) -> None:
    click.echo(_files_line(source, r))


def _files_line(source: str, r: FilesRestoreResult) -> str:
    what = (f"{r.count('files')} files, {r.count('dirs')} folders, {r.count('symlinks')} symlinks, "
            f"{human_size(r.count('bytes'))}")
    sel = f" (only {', '.join(r.paths)})" if r.paths else ""
    over = f"; replaced {r.count('overwritten')} existing" if r.count("overwritten") else ""
    owners = "" if r.owners else "; owners not restored (not running as root)"
    return f"restored {source} backup {r.backup} into {r.target}{sel}: {what} in {human_duration(r.seconds)}{over}{owners}"


@show.register
def _(r: MeilisearchIndexesResult, source: str) -> None:
    for row in r.indexes:
        how = "created" if row["created"] else "swapped in atomically; the previous copy was deleted"
        click.echo(f"restored index {row['index']} → {row['target']}: {row['documents']} documents "
                   f"(primary key {row['primary_key']}), {how}")
    click.echo(f"from {r.origin} of {source} backup {r.backup} (swap task {r.swap_task})")
    _warnings(r.warnings)


@show.register
def _(r: MeilisearchCountsResult, source: str) -> None:
    table(["index", "backup", "live"], [[x["index"], x["expected"], x["live"]] for x in r.indexes])
    _counts_verdict(r)
    click.echo(f"document counts match backup {r.backup}")


def _counts_verdict(r: MeilisearchCountsResult) -> None:
    from ..errors import RestoreFailed

    if r.mismatches:
        names = ", ".join(x["index"] for x in r.mismatches)
        raise RestoreFailed(f"Document counts differ from backup {r.backup}: {names}.",
                            hint="If writes ran since, this is expected; otherwise check GET /tasks for failures.")


@show.register
def _(r: MeilisearchFileResult, source: str) -> None:
    click.echo(f"wrote the {r.what} of {source} backup {r.backup} to {r.path} "
               f"({human_size(r.bytes)}, Meilisearch {r.meilisearch_version}, sha256 verified)")
    if r.restart is not None:
        click.echo(f"ran restart_command: {r.restart['command']}")
        click.echo(f"Meilisearch is {r.restart['health']}; document counts checked for {len(r.restart['indexes'])} indexes")
    else:
        click.echo("next steps:")
        for i, step in enumerate(r.steps, 1):
            click.echo(f"  {i}. {step}")
    _warnings(r.warnings)


@show.register
def _(r: PitrRestoreResult, source: str) -> None:
    click.echo(f"restored base backup {r.backup} of {source} into {r.directory} "
               f"(owner {r.owner}, {human_size(r.base_bytes)} + {r.wal_segments} WAL "
               f"segment(s) {r.wal_first} … {r.wal_last}, timeline {r.recovery_timeline}, "
               f"{human_duration(r.seconds)})")
    click.echo(f"recovery target: {r.target}")
    if not r.started:
        click.echo(f"start it with: pg_ctl -D {r.directory} start  (as the '{r.owner}' user)")
    else:
        click.echo(f"PostgreSQL is running on 127.0.0.1:{r.port} (socket {r.socket_dir}), "
                   f"recovery {r.state}")
        facts = {"stopped": r.stopped, "last_transaction": r.last_transaction, "replay_lsn": r.fact("replay_lsn"),
                 "replay_time": r.fact("replay_time"), "timeline": r.fact("timeline")}
        for key, value in facts.items():
            if value is not None:
                click.echo(f"  {key.replace('_', ' ')}: {value}")
        if r.state == "paused":
            click.echo("  inspect it, then promote with: select pg_wal_replay_resume();")
    for note in r.notes:
        click.echo(f"note: {note}")


def _warnings(warnings: list[str], prefix: str = "") -> None:
    for w in warnings:
        click.echo(f"warning: {prefix}{w}", err=True)


# -- restore points ---------------------------------------------------------------------------

@singledispatch
def point_line(r: Any, source: str) -> None:
    raise TypeError(f"no rendering for {type(r).__name__}")


@point_line.register
def _(r: PostgresRestoreResult, source: str) -> None:
    click.echo(f"restored {source} backup {r.backup} into {r.server} "
               f"({human_size(r.bytes)} in {human_duration(r.seconds)})")
    _warnings(r.warnings, f"{source}: ")


@point_line.register
def _(r: MeilisearchIndexesResult, source: str) -> None:
    names = ", ".join(f"{row['target']} ({row['documents']} documents)" for row in r.indexes)
    click.echo(f"restored {source} backup {r.backup}: {names}")
    _warnings(r.warnings, f"{source}: ")


@point_line.register
def _(r: FilesRestoreResult, source: str) -> None:
    click.echo(_files_line(source, r))


def run_point_restore(state: Any, ref: str, options: dict[str, Any]) -> None:
    from ..operations.points import PointRestore, restore_point

    result = restore_point(state.context(), ref, PointRestore(options), progress=lambda: BarProgress(not state.json))
    if state.json:
        emit_json(result.to_dict())
        return
    for source in result.order:
        point_line(result.restored[source], source)
    click.echo(f"restore point {result.point} restored ({len(result.order)} sources)")
