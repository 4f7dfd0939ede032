"""``posterity wal push|fetch|status|stream``: archive_command, restore_command, streaming.

postgresql.conf on the database server::

    archive_mode = on
    archive_command = '/path/to/posterity -c /etc/posterity/posterity.toml wal push --source pitr %p'

``wal push`` exits 0 only once the file is durably stored. ``wal fetch`` exits 0 when it
restored the file, 1 (quietly) when the file is not archived — PostgreSQL probes for files
that do not exist — and 126 when it is archived but cannot be restored (damaged object,
wrong key, store unreachable): PostgreSQL treats an exit code above 125 as fatal and stops
recovery, instead of ending it early at that point as if the archive ended there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import json_option, pass_state

if TYPE_CHECKING:
    from ..operations.wal_status_result import ArchiverState, StreamState

FETCH_NOT_FOUND = 1
FETCH_FATAL = 126


@click.group("wal")
def wal() -> None:
    """WAL archiving for point-in-time recovery (archive_command / restore_command)."""


@wal.command("push")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", "-s", help="The postgres-physical source this WAL belongs to (default: the only one).")
@json_option
@pass_state
def push(state, path: Path, source: str | None) -> None:
    """Archive WAL file PATH (archive_command: `posterity wal push %p`).

    Silent on success; exits non-zero, with the reason on stderr, whenever the file is not
    durably stored — including when a different file of that name is already archived.
    """
    from ..operations.wal import wal_push

    result = wal_push(state.context(), path, source)
    if result is None:  # doctor's dry run: nothing stored
        return
    if state.json:
        from .render import emit_json

        emit_json(result.to_dict())
    elif state.verbose:
        click.echo(f"{result.name}: {result.status} ({result.raw_size} → {result.size} bytes, {result.seconds:.3f}s)",
                   err=True)


@wal.command("fetch")
@click.argument("name")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", "-s", help="The postgres-physical source (default: the only one).")
@click.option("--identity", "identity_file", type=click.Path(dir_okay=False), envvar="POSTERITY_IDENTITY_FILE",
              help="age identity file (default: [encryption] identity_file).")
@pass_state
def fetch(state, name: str, dest: Path, source: str | None, identity_file: str | None) -> None:
    """Restore archived WAL file NAME to DEST (restore_command: `posterity wal fetch %f %p`).

    Exit 0: restored. Exit 1: not archived (quiet). Exit 126: archived but not restorable.
    """
    from ..errors import PosterityError
    from ..repository.walarchive import WalNotArchived

    try:
        from ..operations.wal import wal_fetch

        wal_fetch(state.context(), name, dest, source, identity_file)
    except WalNotArchived as exc:
        if state.verbose:
            click.echo(exc.message, err=True)
        sys.exit(FETCH_NOT_FOUND)
    except PosterityError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(FETCH_FATAL)
    except Exception as exc:  # anything unexpected must stop recovery too, never look like "not found"
        click.echo(f"error: wal fetch {name}: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(FETCH_FATAL)


@wal.command("status")
@click.option("--source", "-s", help="The postgres-physical source (default: the only one).")
@json_option
@pass_state
def status(state, source: str | None) -> None:
    """Newest archived segment, archive lag and any gap in the archive."""
    from ..operations.wal_status import wal_status
    from .render import emit_json, human_size

    st = wal_status(state.context(), source)
    if state.json:
        emit_json(st.to_dict())
    else:
        click.echo(f"source {st.source} at {st.location}: {st.base_backups} base backup(s)")
        for tl in st.timelines:
            line = f"  timeline {tl.timeline}: {tl.segments} segment(s), {human_size(tl.bytes)} stored"
            if tl.newest:
                line += f", {tl.first} … {tl.newest} (archived {tl.newest_archived_at})"
            if tl.branched_from is not None:
                line += f", branched from timeline {tl.branched_from} at {tl.branched_at}"
            if tl.base_backups is not None:
                line += f", {tl.base_backups} base backup(s) on it"
            click.echo(line)
        click.echo(f"newest archived: {st.newest or 'none'}")
        for gap in st.gaps:
            if gap.trailing:
                click.echo(f"GAP on timeline {gap.timeline}: the server counts WAL up to {gap.last} archived, "
                           f"but this repository holds {'none of it' if gap.first is None else 'nothing from ' + gap.first}"
                           " — archive_command does not store into this repository")
                continue
            click.echo(f"GAP on timeline {gap.timeline}: {gap.missing} missing, {gap.first} … {gap.last}")
        if st.incomplete:
            click.echo(f"incomplete (record without payload): {', '.join(st.incomplete[:5])}")
        _server_lines(st.server)
        if st.ready_files is not None:
            click.echo(f".ready files waiting: {st.ready_files}")
        if st.stream:
            _stream_lines(st.stream)
    if st.failing:
        sys.exit(1)


def _server_lines(srv: ArchiverState) -> None:
    if srv.reachable:
        lag = "?" if srv.lag_segments is None else str(srv.lag_segments)
        click.echo(f"server: last archived {srv.last_archived_wal} at {srv.last_archived_time}, "
                   f"writing {srv.current_wal}, lag {lag} segment(s) behind this repository, "
                   f"{srv.failed_count} failure(s)" + (" — FAILING NOW" if srv.failing else ""))
        if srv.warning:
            click.echo(f"warning: {srv.warning}", err=True)
    else:
        click.echo(f"server: not reachable ({srv.error})")


def _stream_lines(stream: StreamState) -> None:
    from .render import human_size

    slot = stream.slot_state  # the server's row for the slot (pg_replication_slots)
    if slot is None:
        click.echo(f"stream: slot {stream.slot} does not exist — start `posterity wal stream`")
    elif "error" in slot:
        click.echo(f"stream: slot {stream.slot}: {slot['error']}")
    else:
        click.echo(f"stream: slot {stream.slot} {'in use' if slot['active'] else 'NOT IN USE'}, "
                   f"restart_lsn {slot['restart_lsn']}, server keeps "
                   f"{human_size(slot['retained_bytes'] or 0)} of WAL for it ({slot['wal_status']})")
    if stream.newest_snapshot:
        click.echo(f"  newest snapshot {stream.newest_snapshot} stored {stream.newest_snapshot_at} "
                   f"({stream.newest_snapshot_age_seconds}s ago)")
    if stream.local_backlog:
        click.echo(f"  {stream.local_backlog} streamed file(s) waiting to be stored")
    streamer = stream.streamer or {}  # the streamer's own state file
    if streamer.get("last_error"):
        click.echo(f"  last streamer error at {streamer['last_error_at']}: {streamer['last_error']}")
    for why in stream.failing_reasons:
        click.echo(f"  FAILING: {why}")


@wal.command("stream")
@click.option("--source", "-s", help="The postgres-physical source with wal = \"stream\" (default: the only one).")
@click.option("--drop-slot", is_flag=True, help="Drop the source's replication slot and exit (when retiring streaming).")
@pass_state
def stream(state, source: str | None, drop_slot: bool) -> None:
    """Stream WAL continuously (wal = "stream") until stopped with SIGTERM or Ctrl-C.

    Runs pg_receivewal through a replication slot it creates, stores each completed segment,
    and every stream_interval seconds a snapshot of the segment being written (the RPO).
    `posterity daemon` does the same for every streaming source; run one or the other.
    """
    import signal
    import threading

    from ..operations.wal import wal_drop_slot, wal_stream

    ctx = state.context()
    if drop_slot:
        slot, existed = wal_drop_slot(ctx, source)
        click.echo(f"Dropped replication slot {slot}." if existed else f"There is no replication slot {slot}.")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    wal_stream(ctx, stop, source)


def register(cli: click.Group) -> None:
    cli.add_command(wal)
