"""``posterity wal status``: what the WAL archive of a source holds (per timeline, gaps,
incomplete files), what the server's archiver says, and, in streaming mode, the slot and the
streamer. The result types are in ``wal_status_result.py``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import kinds
from ..errors import PosterityError, SourceError
from .context import Context
from .wal import physical_source
from .wal_status_result import ArchiverState, StreamState, TimelineStatus, WalGap, WalStatus


def wal_status(ctx: Context, source: str | None = None) -> WalStatus:
    """Newest archived segment per timeline, gaps, and the server's archiver state."""
    from ..repository import walnames as wal
    from .timelines import timeline_facts

    name = physical_source(ctx, source)
    cfg = ctx.config.source(name)
    listing = ctx.repo.wal(name).listing()
    bases = [m for m in ctx.repo.manifests(name) if kinds.of(m).wal_archive]
    seg_size = int(bases[-1].facts.get("wal_segment_size") or wal.DEFAULT_SEGMENT_SIZE) if bases else wal.DEFAULT_SEGMENT_SIZE
    out = WalStatus(source=name, location=ctx.repo.location, wal_method=cfg.wal, base_backups=len(bases),
                    incomplete=sorted(n for n, f in listing.files.items() if not f.complete))
    oldest_start = bases[0].facts.get("wal_start_segment") if bases else None
    branches = timeline_facts(ctx, name, listing, bases)
    newest: Any = None
    for tli in listing.timelines():
        segs = [f for f in listing.complete("segment") if f.timeline == tli]
        entry = TimelineStatus(
            timeline=tli,
            segments=len(segs),
            partial=len([f for f in listing.complete("partial") if f.timeline == tli]),
            history=listing.has(f"{tli:08X}.history"),
            bytes=sum((f.payload.size if f.payload else 0) for f in listing.files.values() if f.timeline == tli),
        )
        if segs:
            first, last = segs[0], segs[-1]
            entry.first, entry.newest = first.name, last.name
            entry.newest_archived_at = last.archived_at.isoformat() if last.archived_at else None
            if newest is None or (tli, last.name) > (newest.timeline, newest.name):
                newest = last
            lo = wal.segno_of(first.name, seg_size)
            if oldest_start and wal.parse_name(oldest_start).timeline == tli:
                lo = min(lo, wal.segno_of(oldest_start, seg_size))
            have = {wal.segno_of(f.name, seg_size) for f in segs}
            missing = [wal.segment_name(tli, s, seg_size) for s in range(lo, wal.segno_of(last.name, seg_size) + 1)
                       if s not in have]
            if missing:
                out.gaps.append(WalGap(tli, len(missing), missing[0], missing[-1]))
        facts = branches.get(tli)
        if facts is not None:
            entry.base_backups, entry.branched_from, entry.branched_at = (
                facts.base_backups, facts.branched_from, facts.branched_at)
        out.timelines.append(entry)
    out.newest = newest.name if newest else None
    out.newest_archived_at = newest.archived_at.isoformat() if newest and newest.archived_at else None
    if newest is not None and newest.archived_at:
        out.newest_age_seconds = round((datetime.now(UTC) - newest.archived_at).total_seconds(), 1)
    out.server = _server_state(cfg, listing, seg_size)
    if out.server.trailing_gap is not None:  # archived by the server's count, absent here
        out.gaps.append(out.server.trailing_gap)
    if cfg.wal == "stream":
        out.stream = _stream_state(ctx, name, cfg, listing)
    if cfg.data_directory:
        out.counts_ready_files = True
        status_dir = Path(cfg.data_directory) / "pg_wal" / "archive_status"
        try:
            out.ready_files = len([n for n in os.listdir(status_dir) if n.endswith(".ready")])
        except OSError:
            out.ready_files = None
    return out


def _stream_state(ctx: Context, name: str, cfg: Any, listing: Any) -> StreamState:
    """Streaming mode: the slot on the server, the streamer's own state and its local backlog."""
    from ..repository import walnames as wal
    from ..sources.postgres.walstream import _COMPLETE, read_state, slot_info, stream_directory

    out = StreamState(slot=cfg.slot_name(name), interval_seconds=cfg.stream_interval)
    try:
        out.slot_state = slot_info(cfg.dsn.get_secret_value(), out.slot)
    except (PosterityError, SourceError) as exc:
        out.slot_state = {"error": exc.message}
    out.streamer = read_state(ctx.state_dir, name)
    folder = stream_directory(cfg, ctx.state_dir, name)
    try:
        out.local_backlog = len([n for n in os.listdir(folder) if _COMPLETE.match(n)])
    except OSError:
        out.local_backlog = None
    snaps = listing.complete("stream")
    if snaps:
        newest = max(snaps, key=lambda f: (f.name[:24], wal.stream_length(f.name)))
        out.newest_snapshot = newest.name
        if newest.archived_at:
            out.newest_snapshot_at = newest.archived_at.isoformat()
            out.newest_snapshot_age_seconds = round((datetime.now(UTC) - newest.archived_at).total_seconds(), 1)
    slot = out.slot_state
    reasons = out.failing_reasons
    if slot is None:
        reasons.append("the replication slot does not exist")
    elif "error" not in slot and not slot.get("active"):
        reasons.append("no streamer is using the replication slot")
    elif slot.get("wal_status") == "lost":
        reasons.append("the replication slot is invalidated")
    st = out.streamer or {}
    now = datetime.now(UTC)
    if st.get("updated_at"):
        quiet = (now - datetime.fromisoformat(st["updated_at"])).total_seconds()
        if quiet > max(60.0, 10 * cfg.stream_interval):
            reasons.append(f"the streamer has not reported for {quiet:.0f}s")
    last_ok = max((t for t in (st.get("last_segment_at"), st.get("last_snapshot_at"), st.get("started_at")) if t),
                  default=None)
    if st.get("last_error_at") and (last_ok is None or st["last_error_at"] > last_ok) and st.get("backlog"):
        reasons.append(f"{st['backlog']} streamed file(s) cannot be stored: {st.get('last_error')}")
    return out


def _server_state(cfg: Any, listing: Any, seg_size: int) -> ArchiverState:
    from ..repository import walnames as wal
    from ..sources.postgres.tools import connect

    try:
        with connect(cfg.dsn.get_secret_value()) as conn:
            row = conn.execute(
                "select archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
                "last_failed_time, case when pg_is_in_recovery() then null "
                "else pg_walfile_name(pg_current_wal_lsn()) end, now() from pg_stat_archiver"
            ).fetchone()
    except (PosterityError, SourceError) as exc:
        return ArchiverState(reachable=False, error=exc.message)
    assert row is not None
    archived_count, last_wal, last_time, failed_count, failed_wal, failed_time, current, now = row
    state = ArchiverState(
        reachable=True, archived_count=archived_count, last_archived_wal=last_wal,
        last_archived_time=last_time.isoformat() if last_time else None,
        failed_count=failed_count, last_failed_wal=failed_wal,
        last_failed_time=failed_time.isoformat() if failed_time else None,
        current_wal=current,
        failing=bool(failed_time and (last_time is None or failed_time > last_time)),
    )
    # Lag and trailing gap are judged against THIS repository, not against what the server
    # counts as archived: with archive_command = '/bin/true' (or a push elsewhere) the
    # server's lag is 0 while the repository holds nothing (issue 11.2).
    if current and len(current) >= 24:
        try:
            tli = wal.parse_name(current).timeline
            held = [f.name for f in listing.complete("segment") if f.timeline == tli]
            now_no = wal.segno_of(current, seg_size)
            state.lag_known = True
            if held:
                state.lag_segments = max(0, now_no - wal.segno_of(held[-1], seg_size) - 1)
            else:
                state.lag_segments = None  # unknown: the repository holds no segment of this timeline
            if last_wal and len(last_wal) >= 24 and wal.parse_name(last_wal[:24]).timeline == tli:
                said = wal.segno_of(last_wal[:24], seg_size)
                newest = wal.segno_of(held[-1], seg_size) if held else None
                if newest is None or said > newest:
                    state.trailing_gap = WalGap(
                        timeline=tli,
                        missing=said - newest if newest is not None else None,
                        first=wal.segment_name(tli, newest + 1, seg_size) if newest is not None else None,
                        last=last_wal[:24],
                        trailing=True,
                    )
        except ValueError:
            pass
    if last_time:
        state.lag_seconds = round((now - last_time).total_seconds(), 1)
    if last_wal and not last_wal.endswith(".backup") and not listing.has(last_wal):
        state.warning = (f"The server reports {last_wal} archived, but this repository/source does not hold it: "
                            "archive_command may push to another repository or --source.")
    return state
