"""verify's WAL check: every physical base backup's own WAL is archived, and the archive has
no gap after the oldest checked base backup."""

from __future__ import annotations

from .. import kinds
from ..repository import Manifest
from .context import Context
from .verify_result import Finding, VerifyResult


def check_wal_chains(ctx: Context, manifests: list[Manifest], result: VerifyResult) -> None:
    """Every physical base backup's own WAL (start to stop segment) is archived, and the
    archive after the oldest checked base backup has no gap — else point-in-time recovery
    from it would stop short. (The segments' contents are checked by ``wal fetch`` and a
    restore; here we check the chain is complete.)"""
    from ..repository import walnames as wal

    physical = [m for m in manifests if kinds.of(m).wal_archive and m.facts.get("wal_start_segment")]
    by_source: dict[str, list[Manifest]] = {}
    for m in physical:
        by_source.setdefault(m.source, []).append(m)
    for name, bases in by_source.items():
        listing = ctx.repo.wal(name).listing()
        for m in bases:
            size = int(m.facts.get("wal_segment_size") or wal.DEFAULT_SEGMENT_SIZE)
            start = m.facts["wal_start_segment"]
            stop = m.facts.get("wal_stop_segment") or start
            tli = wal.parse_name(start).timeline
            for segno in range(wal.segno_of(start, size), wal.segno_of(stop, size) + 1):
                seg = wal.segment_name(tli, segno, size)
                if not listing.has(seg):
                    result.findings.append(Finding(
                        wal.payload_key(name, seg), "missing",
                        f"WAL segment {seg}, needed to make base backup {m.id} consistent, is not archived.",
                        name, m.id))
        # Gaps: on each timeline, from the oldest checked base backup's start (or the first
        # archived segment) to the newest archived one.
        size = int(bases[0].facts.get("wal_segment_size") or wal.DEFAULT_SEGMENT_SIZE)
        starts = [m.facts["wal_start_segment"] for m in bases]
        for tli in listing.timelines():
            have = {wal.segno_of(f.name, size) for f in listing.complete("segment") if f.timeline == tli}
            if not have:
                continue
            floor = min([min(have)] + [wal.segno_of(x, size) for x in starts if wal.parse_name(x).timeline == tli])
            missing = [n for n in range(floor, max(have) + 1) if n not in have]
            if missing:
                first, last = wal.segment_name(tli, missing[0], size), wal.segment_name(tli, missing[-1], size)
                result.findings.append(Finding(
                    wal.payload_key(name, first), "missing",
                    f"The WAL archive of {name} has a gap on timeline {tli}: {len(missing)} segment(s) "
                    f"from {first} to {last} are missing; recovery cannot pass it.", name))
