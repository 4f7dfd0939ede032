"""``posterity backup [SOURCE…]``."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import BarProgress, emit_json, human_duration, human_size


@click.command("backup")
@click.argument("sources", nargs=-1)
@click.option("--tag", "tags", multiple=True, help="Tag the backup (retention can keep tags apart). Repeatable.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="postgres: parallel pg_dump workers (default: the source's jobs, else the cores, at most 8).")
@json_option
@pass_state
def backup(state, sources: tuple[str, ...], tags: tuple[str, ...], jobs: int | None) -> None:
    """Back up the named sources (all configured sources when none is named).

    With no names, the backups of all sources form one restore point (points/<id>.json,
    see `posterity list --points`), written only when every source succeeded.

    Each source is dumped, compressed (zstd), encrypted (age) and streamed to the
    repository; its manifest is written last, so a failed or killed backup never appears.
    """
    from ..errors import PosterityError
    from ..operations.backup import backup_source

    ctx = state.context()
    names = list(sources) or sorted(ctx.config.sources)
    if not names:
        raise click.UsageError("No sources are configured; add a [sources.NAME] section.")
    for n in names:
        ctx.config.source(n)  # unknown names fail before anything runs
    results = []
    failures: list[tuple[str, PosterityError]] = []
    for name in names:
        try:
            res = backup_source(ctx, name, tags=list(tags), progress=BarProgress(not state.json), jobs=jobs)
        except PosterityError as exc:
            if len(names) == 1:
                raise
            failures.append((name, exc))
            click.echo(f"error: {name}: {exc.message}", err=True)
            continue
        results.append(res)
        if not state.json:
            m = res.manifest
            ratio = f" from {human_size(m.raw_size)}" if m.raw_size else ""
            if m.facts.get("unchanged_from"):
                click.echo(f"{m.source}: backup {m.id} unchanged since {m.facts['unchanged_from']}, nothing new stored")
            else:
                click.echo(f"{m.source}: backup {m.id} stored {human_size(m.size)}{ratio} in {human_duration(res.seconds)}")
            for w in m.facts.get("warnings") or []:
                click.echo(f"warning: {m.source}: {w}", err=True)
    point = None
    if not sources:  # every source: one restore point, written only when all succeeded
        from ..operations.points import write_point

        if failures:
            click.echo(f"error: no restore point written: {', '.join(n for n, _ in failures)} failed", err=True)
        else:
            point = write_point(ctx, [r.manifest for r in results], tags=list(tags))
            if not state.json:
                click.echo(f"restore point {point.id}: " + ", ".join(f"{b.source} {b.backup}" for b in point.backups))
    if state.json:
        emit_json({"backups": [r.to_dict() for r in results],
                   "failures": [{"source": n, **e.to_dict()} for n, e in failures],
                   "point": point.to_dict() if point else None})
    if failures:
        raise SystemExit(max(e.exit_code for _, e in failures))


def register(cli: click.Group) -> None:
    cli.add_command(backup)
