"""Rendering for Meilisearch: ``restore`` of a meilisearch source, and its facts in ``show``.

``cli/restore.py`` parses the options and calls ``restore`` here; ``cli/listing.py`` calls
``show_facts``. No logic beyond choosing the operation and printing its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .render import emit_json, human_size, table


def restore(
    state: Any,
    source: str,
    ref: str,
    *,
    indexes: tuple[str, ...],
    all_indexes: bool,
    as_name: str | None,
    replace: bool,
    snapshot_to: Path | None,
    dump_to: Path | None,
    check_counts: bool,
    identity_file: str | None,
) -> None:
    from ..errors import RestoreFailed
    from ..operations import restore_meilisearch as op

    chosen = [bool(indexes), all_indexes, snapshot_to is not None, dump_to is not None]
    if sum(chosen) > 1 or (sum(chosen) == 0 and not check_counts):
        raise click.UsageError(
            "meilisearch restores need exactly one of --index NAME (repeatable), --all, --snapshot-to PATH, "
            "--dump-to PATH (or --check-counts alone).\n"
            f"  posterity restore {source} latest --index posters --replace\n"
            f"  posterity restore {source} latest --index posters --as posters_restored\n"
            f"  posterity restore {source} latest --snapshot-to /var/tmp/restore/"
        )
    if as_name and len(indexes) != 1:
        raise click.UsageError("--as renames one index: give exactly one --index with it.")
    ctx = state.context()
    if indexes or all_indexes:
        result = op.restore_meilisearch_indexes(
            ctx, source, ref, indexes=list(indexes) or None, as_name=as_name, replace=replace,
            identity_file=identity_file,
        )
        if state.json:
            emit_json(result)
            return
        for row in result["indexes"]:
            how = "created" if row["created"] else "swapped in atomically; the previous copy was deleted"
            click.echo(f"restored index {row['index']} → {row['target']}: {row['documents']} documents "
                       f"(primary key {row['primary_key']}), {how}")
        click.echo(f"from {result['from']} of {source} backup {result['backup']} (swap task {result['swap_task']})")
        _warnings(result)
        return
    if check_counts and not (snapshot_to or dump_to):
        report = op.check_meilisearch_counts(ctx, source, ref)
        if state.json:
            emit_json(report)
        else:
            table(["index", "backup", "live"], [[r["index"], r["expected"], r["live"]] for r in report["indexes"]])
        if report["mismatches"]:
            names = ", ".join(r["index"] for r in report["mismatches"])
            raise RestoreFailed(f"Document counts differ from backup {report['backup']}: {names}.",
                                hint="If writes ran since, this is expected; otherwise check GET /tasks for failures.")
        if not state.json:
            click.echo(f"document counts match backup {report['backup']}")
        return
    what, path = ("snapshot", snapshot_to) if snapshot_to else ("dump", dump_to)
    assert path is not None
    result = op.restore_meilisearch_file(ctx, source, ref, what=what, path=path, identity_file=identity_file)
    if state.json:
        emit_json(result)
        return
    click.echo(f"wrote the {what} of {source} backup {result['backup']} to {result['path']} "
               f"({human_size(result['bytes'])}, Meilisearch {result['meilisearch_version']}, sha256 verified)")
    if "restart" in result:
        r = result["restart"]
        click.echo(f"ran restart_command: {r['command']}")
        click.echo(f"Meilisearch is {r['health']}; document counts checked for {len(r['indexes'])} indexes")
    else:
        click.echo("next steps:")
        for i, step in enumerate(result["steps"], 1):
            click.echo(f"  {i}. {step}")
    _warnings(result)


def _warnings(result: dict[str, Any]) -> None:
    for w in result.get("warnings", []):
        click.echo(f"warning: {w}", err=True)


def show_facts(facts: dict[str, Any]) -> None:
    """The Meilisearch part of ``posterity show`` (human form)."""
    if facts.get("url"):
        click.echo(f"url             {facts['url']}")
    if facts.get("modes"):
        click.echo(f"modes           {', '.join(facts['modes'])}")
    marker = facts.get("consistency_marker") or {}
    if "last_task_uid" in marker:
        click.echo(f"last task uid   {marker['last_task_uid']}")
    stats = facts.get("stats") or {}
    if stats.get("databaseSize") is not None:
        click.echo(f"database size   {human_size(stats['databaseSize'])}")
    features = facts.get("experimental_features")
    if isinstance(features, dict):
        on = [k for k, v in features.items() if v]
        click.echo(f"experimental    {', '.join(on) or 'none enabled'}")
    indexes = facts.get("indexes") or {}
    settings = facts.get("settings") or {}
    if indexes:
        rows = []
        for uid, i in sorted(indexes.items()):
            s = settings.get(uid) or {}
            rows.append([uid, i.get("primary_key"), i.get("documents"),
                         ", ".join(s.get("filterableAttributes") or []) or "-",
                         ", ".join(s.get("sortableAttributes") or []) or "-",
                         ", ".join(sorted(s.get("embedders") or {})) or "-"])
        table(["index", "primary key", "documents", "filterable", "sortable", "embedders"], rows)
    keys = facts.get("keys")
    if keys:
        table(["api key", "description", "actions", "indexes", "expires"],
              [[k.get("name") or k.get("uid"), k.get("description") or "", ", ".join(k.get("actions") or []),
                ", ".join(k.get("indexes") or []), k.get("expiresAt") or "never"] for k in keys])
    elif facts.get("keys_note"):
        click.echo(facts["keys_note"])
    click.echo("full settings of every index: posterity show ID --json (facts.settings)")
