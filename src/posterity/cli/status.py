"""``posterity status``: freshness, failures and size trend of every source."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json, human_duration, human_size, table


@click.command("status", epilog="Exit codes: 0 every source fresh; 12 a source is stale or never backed up; "
               "13 a source's last backup failed or its WAL archiving raises an alert (others as for every command).")
@json_option
@pass_state
def status(state) -> None:
    """Show each source's last success and its age against max_age, the last failure and
    why, and the sizes of the last backups. Exits non-zero when any source is stale or
    failing, so it can gate monitoring (e.g. a cron job or a Nagios-style check)."""
    from ..operations.status import status as run_status

    report = run_status(state.context())
    if state.json:
        emit_json(report.to_dict())
    else:
        rows = []
        for s in report.sources:
            last = s.last_success
            age = human_duration(s.age_seconds) if s.age_seconds is not None else "-"
            fail = "-"
            if s.last_failure:
                fail = f"{(s.last_failure.time or '')[:19]} {s.last_failure.error or ''}".strip()
            trend = " → ".join(human_size(x) for x in s.sizes[-5:]) or "-"
            if s.size_anomaly_median is not None:
                trend += f"  (!) below {human_size(s.size_anomaly_median)} median"
            drill = "-"
            if s.last_drill:
                d = s.last_drill
                rto = human_duration(d.restore_seconds) if d.restore_seconds is not None else "?"
                drill = f"{(d.time or '')[:19]} {'passed' if d.ok else 'FAILED'}, RTO {rto}"
            if s.archiving and s.archiving.alerts:
                fail = "; ".join(a["message"] for a in s.archiving.alerts) + (f" | {fail}" if fail != "-" else "")
            rows.append([s.source, s.state.upper() if s.state != "ok" else "ok",
                         last.time[:19] if last else "never", age, s.max_age or "-", fail, trend, drill])
        table(["source", "state", "last success (UTC)", "age", "max age", "last failure", "sizes",
               "last drill"], rows)
    if report.exit_code:
        raise SystemExit(report.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(status)
