"""``posterity restore SOURCE REF --to-directory DIR …`` for postgres-physical sources.

Called from ``cli/restore.py``; parses nothing of its own, renders the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def run_pitr_restore(state, source: str, ref: str, *, to_directory: Path | None, **opts: Any) -> None:
    from ..config.load import find_config
    from ..operations.pitr import restore_pitr
    from .render import BarProgress, emit_json, human_duration, human_size

    if to_directory is None:
        raise click.UsageError("postgres-physical restores need --to-directory DIR.")
    ctx = state.context()
    result = restore_pitr(ctx, source, ref, to_directory=to_directory, config_path=find_config(state.config_path),
                          progress=BarProgress(not state.json), **opts)
    if state.json:
        emit_json(result)
        return
    click.echo(f"restored base backup {result['backup']} of {source} into {result['directory']} "
               f"(owner {result['owner']}, {human_size(result['base_bytes'])} + {result['wal_segments']} WAL "
               f"segment(s) {result['wal_first']} … {result['wal_last']}, timeline {result['recovery_timeline']}, "
               f"{human_duration(result['seconds'])})")
    click.echo(f"recovery target: {result['target']}")
    if not result["started"]:
        click.echo(f"start it with: pg_ctl -D {result['directory']} start  (as the '{result['owner']}' user)")
    else:
        click.echo(f"PostgreSQL is running on 127.0.0.1:{result['port']} (socket {result['socket_dir']}), "
                   f"recovery {result['state']}")
        for key in ("stopped", "last_transaction", "replay_lsn", "replay_time", "timeline"):
            if result.get(key) is not None:
                click.echo(f"  {key.replace('_', ' ')}: {result[key]}")
        if result["state"] == "paused":
            click.echo("  inspect it, then promote with: select pg_wal_replay_resume();")
    for note in result.get("notes", []):
        click.echo(f"note: {note}")
