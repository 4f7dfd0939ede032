"""``posterity doctor``: check everything a source needs, the way it will run."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json, table


@click.command("doctor", epilog="Exit codes: 0 no check failed (warnings allowed); 15 a check failed "
               "(others as for every command).")
@click.option("--source", "-s", help="Check only this source (the repository and keys are always checked).")
@json_option
@pass_state
def doctor(state, source: str | None) -> None:
    """Check the repository (reachable, a create-once write, clock skew), the keys (recipients,
    the identity file's mode and owner) and each source as it will run: PostgreSQL versions
    and privileges, archive_command run as the data directory's owner, archiving backlog and
    pg_wal's disk, replication slots; Meilisearch key actions and folders; files paths.
    Each check is ok, warn or fail with a hint. Run it as root on the database server to
    check archive_command as PostgreSQL runs it."""
    from ..operations.doctor import doctor as run_doctor

    ctx = state.context()
    if source:
        ctx.config.source(source)  # an unknown name is a usage error (exit 2), not a failed check
    report = run_doctor(ctx, source)
    if state.json:
        emit_json(report.to_dict())
    else:
        rows = []
        for c in report.checks:
            text = c.detail + (f"\nhint: {c.hint}" if c.hint and c.status != "ok" else "")
            rows.append([c.source or "-", c.name, c.status.upper() if c.status != "ok" else "ok", text])
        table(["source", "check", "result", "detail"], rows)
        n = report.counts()
        click.echo(f"{n['ok']} ok, {n['warn']} warning(s), {n['fail']} failure(s)")
    if report.exit_code:
        raise SystemExit(report.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(doctor)
