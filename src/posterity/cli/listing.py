"""``posterity list`` and ``posterity show``: the catalog."""

from __future__ import annotations

import importlib

import click

from .. import kinds
from .common import json_option, pass_state
from .render import emit_json, human_duration, human_size, table


@click.command("list")
@click.option("--source", "-s", help="Only this source.")
@click.option("--points", is_flag=True, help="List restore points (backups of every source taken together) instead.")
@json_option
@pass_state
def list_cmd(state, source: str | None, points: bool) -> None:
    """List committed backups, oldest first."""
    ctx = state.context()
    if points:
        from .points_render import list_points_cmd

        return list_points_cmd(state, ctx)
    manifests = ctx.repo.manifests(source)
    if state.json:
        from ..operations.catalog import backup_summary

        emit_json([backup_summary(m).to_dict() for m in manifests])
        return
    if not manifests:
        click.echo("no backups yet")
        return
    rows = []
    for m in manifests:
        secs = (m.finished - m.started).total_seconds()
        rows.append([m.id, m.source, m.kind, m.started.strftime("%Y-%m-%d %H:%M:%S"), human_duration(secs),
                     "unchanged" if m.facts.get("unchanged_from") else human_size(m.size),
                     human_size(m.raw_size), ",".join(m.tags)])
    table(["id", "source", "kind", "started (UTC)", "took", "stored", "original", "tags"], rows)


@click.command("show")
@click.argument("ref")
@click.option("--source", "-s", help="Source, needed with 'latest' when several are configured.")
@json_option
@pass_state
def show(state, ref: str, source: str | None) -> None:
    """Show one backup (an id, a unique id prefix, or 'latest')."""
    ctx = state.context()
    m = ctx.repo.find(ref, source)
    recipients = backup_recipients(m)
    if state.json:
        emit_json({**m.to_dict(), "recipient_fingerprints": sorted(recipients)})
        return
    click.echo(f"backup          {m.id}")
    click.echo(f"source          {m.source} ({m.kind})")
    click.echo(f"taken           {m.started_at} → {m.finished_at} on {m.host}")
    click.echo(f"posterity       {m.posterity_version}")
    click.echo(f"size            {human_size(m.size)} stored, {human_size(m.raw_size)} original")
    for k in ("server_version", "pg_dump_version", "database", "database_size", "snapshot_lsn", "snapshot_time"):
        if k in m.facts:
            v = m.facts[k]
            click.echo(f"{k:<16}{human_size(v) if k.endswith('size') else v}")
    if m.facts.get("row_counts"):
        rc = m.facts["row_counts"]
        click.echo(f"tables          {len(rc)} ({sum(rc.values())} rows, {m.facts.get('row_counts_kind')})")
    if m.facts.get("unchanged_from"):
        click.echo(f"unchanged       same content as {m.facts['unchanged_from']}; no new payload (its artifacts are that backup's)")
    if "files" in m.facts:
        click.echo(f"files           {m.facts.get('file_count')} files, {m.facts.get('dir_count')} folders, "
                   f"{m.facts.get('symlink_count')} symlinks, {human_size(m.facts.get('total_size'))} "
                   f"from {', '.join(m.facts.get('paths') or [])}")
        click.echo(f"digest          {m.facts.get('content_digest')}")
        for w in m.facts.get("warnings") or []:
            click.echo(f"warning         {w}")
    if view := kinds.of(m).show_facts:  # e.g. Meilisearch's indexes and documents
        module, func = view.split(":")
        getattr(importlib.import_module(module), func)(m.facts)
    if m.tags:
        click.echo(f"tags            {', '.join(m.tags)}")
    for i, (fp, r) in enumerate(sorted(recipients.items())):
        click.echo(f"{'recipients' if i == 0 else '':<16}{fp}  {r[:16]}…")
    table(["artifact", "kind", "stored", "original", "sha256", "key"],
          [[a.name, a.kind, human_size(a.size), human_size(a.raw_size), a.sha256[:16] + "…", a.key] for a in m.artifacts])
    if m.restore_by_hand:
        click.echo("restore by hand ($REPO = the repository url, key.txt = the identity):")
        for c in m.restore_by_hand:
            click.echo(f"  {c}")


def backup_recipients(m) -> dict[str, str]:
    """Fingerprint → recipient of every age recipient the backup's artifacts were encrypted to."""
    from ..repository.repository import fingerprint

    out: dict[str, str] = {}
    for a in m.artifacts:
        for spec in a.stages:
            if isinstance(spec, dict) and spec.get("name") == "age":
                out.update({fingerprint(str(r)): str(r) for r in spec.get("recipients") or []})
    return out


def register(cli: click.Group) -> None:
    cli.add_command(list_cmd)
    cli.add_command(show)
