"""``posterity schedule next`` and ``posterity schedule systemd``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from .common import json_option, pass_state
from .render import emit_json, table


@click.group("schedule")
def schedule_group() -> None:
    """Inspect the [[schedule]] jobs, or turn them into systemd timers."""


@schedule_group.command("next")
@click.option("--count", "-n", type=click.IntRange(1, 100), default=3, show_default=True, help="Runs per job.")
@json_option
@pass_state
def next_runs(state, count: int) -> None:
    """Show when each job runs next (UTC), as the daemon computes it (before jitter)."""
    from ..scheduler.upcoming import upcoming_runs

    ctx = state.context()
    tz = ctx.config.daemon.timezone
    runs = upcoming_runs(ctx.config, count)
    if state.json:
        emit_json({r.job: r.to_dict() for r in runs})
        return
    if not runs:
        click.echo("no [[schedule]] jobs are configured")
        return
    table(["job", "cron", f"next runs (UTC; cron read in {tz})", "sources", "tag"],
          [[r.job, r.cron, "\n".join(x.isoformat()[:19].replace("T", " ") for x in r.next), ", ".join(r.sources),
            ",".join(r.tags)] for r in runs])


@schedule_group.command("systemd")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Write the files here (e.g. /etc/systemd/system) instead of printing them.")
@click.option("--binary", help="Path of the posterity program in ExecStart (default: the one running now).")
@pass_state
def systemd(state, output_dir: Path | None, binary: str | None) -> None:
    """Print a .service and .timer per [[schedule]] job (and a daemon .service).

    \b
    Install:
      posterity schedule systemd -o /etc/systemd/system
      systemctl daemon-reload && systemctl enable --now posterity-daily.timer
    """
    from ..config import find_config
    from ..scheduler.systemd import units

    ctx = state.context()
    config_path = find_config(state.config_path).resolve()
    prog = binary or shutil.which("posterity") or str(Path(sys.argv[0]).resolve())
    files = units(ctx.config, config_path, prog)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            (output_dir / name).write_text(body)
            click.echo(f"wrote {output_dir / name}")
        return
    for name, body in files.items():
        click.echo(f"# ---- {name} ----")
        click.echo(body)


def register(cli: click.Group) -> None:
    cli.add_command(schedule_group)
