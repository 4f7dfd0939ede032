"""``posterity prune [--dry-run] [--source S]``."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json, human_duration, human_size, table


@click.command("prune")
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be removed, and why.")
@click.option("--source", "-s", "sources", multiple=True, help="Only this source (repeatable; default: all).")
@json_option
@pass_state
def prune(state, dry_run: bool, sources: tuple[str, ...]) -> None:
    """Remove backups the [retention] policy no longer keeps, and leftovers of killed backups.

    Every backup is shown with keep/remove and the rule that decided. The newest backup of
    each source is always kept; manifests are deleted before their payloads; payloads a kept
    backup still uses are never deleted; a source whose backup is running is skipped. Keys a
    bucket lock protects are reported and retried by a later prune.
    """
    from ..operations.prune import prune as run_prune

    ctx = state.context()
    report = run_prune(ctx, dry_run=dry_run, sources=sources or None)
    if state.json:
        emit_json(report.to_dict())
        return
    rows = [
        [b.source, b.id, b.time.strftime("%Y-%m-%d %H:%M"), ",".join(b.tags), human_size(b.size),
         b.action, b.rule]
        for b in sorted(report.backups, key=lambda b: (b.source, b.time, b.id))
    ]
    if rows:
        table(["source", "id", "taken (UTC)", "tags", "stored", "action", "rule"], rows,
              title="dry run: nothing was removed" if dry_run else None)
    else:
        click.echo("no backups")
    for o in report.orphans:
        click.echo(f"uncommitted {o.source}/{o.id}: {len(o.keys)} object(s), {human_size(o.size)}, "
                   f"{human_duration(o.age_seconds)} old: {o.action}")
    for src, why in sorted(report.skipped.items()):
        click.echo(f"skipped {src}: {why}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if report.locked_keys:
        click.echo(f"{len(report.locked_keys)} object(s) are protected by a bucket lock (access denied) and were "
                   "kept; a later prune removes them once the lock allows:")
        for k in report.locked_keys[:20]:
            click.echo(f"  {k}")
    if report.wal_deleted:
        click.echo(f"{'would remove' if dry_run else 'removed'} {report.wal_deleted} WAL object(s) "
                   "no kept base backup needs")
    n_remove = len(report.removed)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {n_remove} backup(s) and {sum(1 for o in report.orphans if o.action in ('remove', 'removed'))} "
               f"uncommitted one(s); kept {len(report.backups) - n_remove}"
               + ("" if dry_run else f"; freed {human_size(report.deleted_bytes)} in {len(report.deleted_keys)} object(s)"))


def register(cli: click.Group) -> None:
    cli.add_command(prune)
