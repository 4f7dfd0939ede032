"""``posterity verify [REF | --latest | --all] [--read-data | --read-data-subset 10%]``."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import BarProgress, emit_json, human_duration, human_size


@click.command("verify")
@click.argument("ref", required=False)
@click.option(
    "--latest", is_flag=True, help="Only the latest backup of each source (or of --source)."
)
@click.option("--all", "all_", is_flag=True, help="Every backup and restore point (the default).")
@click.option("--source", "-s", help="Only this source's backups.")
@click.option(
    "--read-data",
    is_flag=True,
    help="Download every object and check its sha256, decryption, "
    "decompression and content (pg_restore reads a pg_dump archive to its end).",
)
@click.option(
    "--read-data-subset",
    "subset",
    metavar="PCT",
    help="Like --read-data for a random share of the objects, e.g. 10%.",
)
@click.option(
    "--identity",
    "identity_file",
    type=click.Path(dir_okay=False),
    envvar="POSTERITY_IDENTITY_FILE",
    help="age identity file for --read-data (default: [encryption] identity_file).",
)
@json_option
@pass_state
def verify_cmd(
    state,
    ref: str | None,
    latest: bool,
    all_: bool,
    source: str | None,
    read_data: bool,
    subset: str | None,
    identity_file: str | None,
) -> None:
    """Check that backups are complete and, with --read-data, that they decode.

    Without --read-data every object named by a manifest must exist with its recorded size,
    and every restore point must name committed backups (no identity needed). Every problem
    is listed by object; the exit code is 6 when anything is wrong.

    \b
    Examples:
      posterity verify                       # structure of everything
      posterity verify --latest --read-data  # read the newest backup of each source
      posterity verify --read-data-subset 10%
    """
    from ..errors import IntegrityError
    from ..operations.verify import parse_subset, verify

    if sum(bool(x) for x in (ref, latest, all_)) > 1:
        raise click.UsageError("Give one of REF, --latest or --all.")
    if read_data and subset:
        raise click.UsageError("Give --read-data or --read-data-subset, not both.")
    fraction = parse_subset(subset) if subset else None
    ctx = state.context()
    result = verify(
        ctx,
        ref,
        latest=latest,
        source=source,
        read_data=read_data,
        subset=fraction,
        identity_file=identity_file,
        progress=BarProgress(not state.json),
    )
    if state.json:
        emit_json(result.to_dict())
        if not result.ok:
            raise SystemExit(IntegrityError.exit_code)
        return
    what = f"{len(result.backups)} backup(s), {result.objects} object(s)"
    if result.points:
        what += f", {result.points} restore point(s)"
    click.echo(f"verify ({result.mode}): checked {what} in {human_duration(result.seconds)}")
    if result.objects_read:
        rate = result.bytes_read / result.seconds if result.seconds else 0
        click.echo(
            f"read {result.objects_read} object(s): {human_size(result.bytes_read)} stored, "
            f"{human_size(result.raw_bytes)} decoded ({human_size(rate)}/s)"
        )
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    if result.uncommitted:
        click.echo(
            f"note: {len(result.uncommitted)} object(s) belong to no committed backup "
            "(an interrupted or running backup); they are not listed and prune removes them."
        )
    for f in result.findings:
        click.echo(f"BAD {f.problem}: {f.message}", err=True)
    if result.ok:
        click.echo("no problems found")
        return
    keys = ", ".join(f.key for f in result.findings[:5])
    more = f" and {len(result.findings) - 5} more" if len(result.findings) > 5 else ""
    raise IntegrityError(
        f"verify found {len(result.findings)} problem(s): {keys}{more}.",
        hint="Restore from a backup that verifies (`posterity list`), and take a new backup soon: "
        "it stores the data again (a damaged payload is never reused by an unchanged backup).",
    )


def register(cli: click.Group) -> None:
    cli.add_command(verify_cmd)
