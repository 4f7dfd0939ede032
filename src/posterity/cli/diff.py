"""``posterity diff REF1 [REF2]``: what changed between two files backups (manifests only)."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json, human_size

LABELS = {
    "added": "added",
    "removed": "removed",
    "modified": "modified",
    "mode": "mode",
    "owner": "owner",
    "touched": "touched",
}


def _detail(kind: str, before: dict | None, after: dict | None) -> str:
    b, a = before or {}, after or {}
    if kind == "added":
        return (
            f"({a.get('type')}, {human_size(a.get('size'))})"
            if a.get("type") == "file"
            else f"({a.get('type')})"
        )
    if kind == "removed":
        return f"({b.get('type')})"
    if kind == "modified":
        if b.get("type") != a.get("type"):
            return f"({b.get('type')} → {a.get('type')})"
        if b.get("target") != a.get("target"):
            return f"(→ {b.get('target')} became → {a.get('target')})"
        return f"({human_size(b.get('size'))} → {human_size(a.get('size'))})"
    if kind == "mode":
        return f"{b.get('mode')} → {a.get('mode')}"
    if kind == "owner":
        return f"{b.get('user') or b.get('uid')}:{b.get('group') or b.get('gid')} → {a.get('user') or a.get('uid')}:{a.get('group') or a.get('gid')}"
    return "(mtime only)"


@click.command("diff")
@click.argument("ref1")
@click.argument("ref2", required=False)
@click.option(
    "--source",
    "-s",
    help="Source of the backups (needed with 'latest' when several files sources exist).",
)
@json_option
@pass_state
def diff(state, ref1: str, ref2: str | None, source: str | None) -> None:
    """Show what changed between two files backups: added, removed, modified, mode and
    owner changes. Reads the two manifests only; no payload is downloaded or decrypted.

    \b
    Examples:
      posterity diff 20240115T020000Z-ab12 20240116T020000Z-cd34
      posterity diff latest --source config      # latest against the backup before it
    """
    from ..operations.diff import diff_backups

    result = diff_backups(state.context(), ref1, ref2, source)
    if state.json:
        emit_json(result.to_dict())
        return
    click.echo(f"{result.source}: {result.old} → {result.new}")
    if not result.changes:
        click.echo("no changes")
        return
    for change in result.changes:
        for kind in change.kinds:
            click.echo(
                f"  {LABELS[kind]:<9} {change.path} {_detail(kind, change.before, change.after)}".rstrip()
            )
    counts = ", ".join(f"{n} {k}" for k, n in result.summary().items() if n)
    click.echo(counts)


def register(cli: click.Group) -> None:
    cli.add_command(diff)
