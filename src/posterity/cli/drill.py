"""``posterity drill [--source S] [--point ID|latest]``: restore into a throwaway target and check it."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import BarProgress, emit_json, human_duration, human_size


@click.command("drill")
@click.option(
    "--source",
    "-s",
    "sources",
    multiple=True,
    help="Source to drill (repeatable; default: every source whose kind has a drill).",
)
@click.option(
    "--point",
    default="latest",
    show_default=True,
    help="Backup id (or unique prefix), restore point id, or 'latest'.",
)
@click.option(
    "--identity",
    "identity_file",
    type=click.Path(dir_okay=False),
    envvar="POSTERITY_IDENTITY_FILE",
    help="age identity file (default: [encryption] identity_file).",
)
@json_option
@pass_state
def drill_cmd(state, sources: tuple[str, ...], point: str, identity_file: str | None) -> None:
    """Restore a backup into a throwaway target, check it, and report the restore time.

    PostgreSQL: restores into a temporary cluster started from the local binaries
    (drill = "temp-cluster", the default) or a scratch database on the source's server
    (drill = "scratch-db"), compares per-table row counts with those recorded at backup
    time and runs the [[sources.NAME.checks]] queries.

    Point-in-time (postgres-physical): restores the base backup and every archived WAL
    segment after it into a temporary directory (pg_verifybackup first), starts PostgreSQL
    there with archiving off, checks that recovery reached the newest archived WAL, and runs
    the [[sources.NAME.checks]] queries (each in its `database`).

    Files: restores into a temporary folder under staging_dir (or TMPDIR) and compares
    every file's size and sha256, and every symlink's target, with the backup's file list.

    Meilisearch: restores every index of the export (or dump) into a temporary index
    INDEX__drill_HEX on the configured server, compares document counts and primary keys
    with the backup's, and runs a sample search; a snapshot-only backup fails the drill
    (it needs mode export or dump).

    The report is stored in the repository (drills/SOURCE/ID.json) and everything the
    drill created is removed, also when it fails.

    \b
    Examples:
      posterity drill
      posterity drill --source db --point 20240115T020000Z-ab12
    """
    from ..errors import PosterityError
    from ..operations.drill import DrillReport, drillable_sources, run_drill

    ctx = state.context()
    names = list(sources) or drillable_sources(ctx)
    if not names:
        raise click.UsageError(
            "No configured source has a drill (drills exist for postgres, postgres-physical, files and "
            "meilisearch sources)."
        )
    reports = []
    failures: list[tuple[str, PosterityError, DrillReport | None]] = []
    for name in names:
        report: DrillReport | None = None
        try:
            outcome = run_drill(
                ctx, name, point, identity_file=identity_file, progress=BarProgress(not state.json)
            )
            report, error = outcome.report, outcome.error
        except PosterityError as exc:  # before the drill started: no report
            error = exc
        if error is None:
            assert report is not None
            reports.append(report)
            if not state.json:
                _render(report)
            continue
        if report is not None and not state.json:
            _render(report)
        if len(names) == 1 and not state.json:
            raise error
        failures.append((name, error, report))
        if not state.json:
            click.echo(f"error: {name}: {error.message}", err=True)
    if state.json:
        emit_json(
            {
                "drills": [r.to_dict() for r in reports],
                "failures": [
                    {"source": n, **e.to_dict(), "report": r.to_dict() if r is not None else None}
                    for n, e, r in failures
                ],
            }
        )
    if failures:
        raise SystemExit(max(e.exit_code for _, e, _r in failures))


def _render(r) -> None:
    verdict = "passed" if r.ok else "FAILED"
    restored = (
        f"restored {human_size(r.bytes)} in {human_duration(r.restore_seconds)} (RTO)"
        if r.restore_seconds is not None
        else "did not restore"
    )
    click.echo(
        f"{r.source}: drill {r.id} of backup {r.backup} {verdict} — {restored}, "
        f"{human_duration(r.total_seconds)} in all"
    )
    click.echo(f"  target: {r.target}; cleanup: {r.cleanup}")
    for c in r.checks:
        click.echo(f"  {'ok ' if c.ok else 'BAD'} {c.name}: {c.detail}")
    for w in r.warnings:
        click.echo(f"  warning: {w}", err=True)
    click.echo(f"  report: {r.key}")


def register(cli: click.Group) -> None:
    cli.add_command(drill_cmd)
