"""``posterity audit``: list the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from .common import json_option, pass_state
from .render import emit_json, table


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    from ..config.durations import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (7d, 12h) nor a date (2024-01-15)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command("audit")
@click.option("--since", default="30d", show_default=True,
              help="Only records newer than this: a duration (7d, 12h) or a date/time (2024-01-15, UTC).")
@click.option("--op", help="Only this operation (backup, restore, prune, init, verify, …).")
@click.option("--source", "-s", help="Only records about this source.")
@click.option("--local", is_flag=True, help="Read this host's local mirror (<state_dir>/audit.jsonl), not the repository.")
@json_option
@pass_state
def audit(state, since: str | None, op: str | None, source: str | None, local: bool) -> None:
    """List audit records, oldest first: who, where, when, what, result.

    Every backup, restore, prune and repository change writes one write-once record to
    the repository (audit/<date>/…) and a line to a local mirror.
    """
    from ..operations.audit import read_audit

    records = read_audit(state.context(), since=_since(since), op=op, source=source, local=local)
    if state.json:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("no audit records")
        return
    rows = []
    for r in records:
        what = ", ".join(f"{k}={v}" for k, v in r.details().items())
        rows.append([r.time[:19], r.operation, r.result, r.who, what])
    table(["time (UTC)", "operation", "result", "who", "details"], rows)


def register(cli: click.Group) -> None:
    cli.add_command(audit)
