"""Rendering for Meilisearch: its facts in ``show`` (``cli/listing.py`` calls ``show_facts``).

A restore's result is rendered by ``cli/restore_render.py``, like every kind's.
"""

from __future__ import annotations

from typing import Any

import click

from .render import human_size, table


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
