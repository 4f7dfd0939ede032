"""Rendering for ``posterity list --points`` (called from ``cli/listing.py``)."""

from __future__ import annotations

from datetime import datetime

import click

from .render import emit_json, table


def list_points_cmd(state, ctx) -> None:
    from ..operations.points import list_points, marker_text

    points = list_points(ctx.repo)
    if state.json:
        emit_json([p.to_dict() for p in points])
        return
    if not points:
        click.echo("no restore points yet (run `posterity backup` without source names)")
        return
    rows = []
    for p in points:
        started = datetime.fromisoformat(p.started_at).strftime("%Y-%m-%d %H:%M:%S")
        backups = "\n".join(f"{b.source}: {b.backup}" for b in p.backups)
        markers = "\n".join(
            f"{b.source}: {marker_text(b.kind, b.consistency_marker)}" for b in p.backups
        )
        rows.append([p.id, started, backups, markers, ",".join(p.tags)])
    table(["point", "started (UTC)", "backups", "consistency", "tags"], rows)
