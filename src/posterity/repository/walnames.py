"""WAL file names, timelines and which archived files a restore or a kept backup needs.

Pure functions, no I/O: the archive itself (push, fetch, status) is ``walarchive.py``.

Names are PostgreSQL's: a segment is ``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, then the
segment number split in two), a timeline history file ``TTTTTTTT.history``, the last,
unfinished segment of a timeline left behind by a promotion ``<segment>.partial``, and a
backup history file ``<segment>.XXXXXXXX.backup``. Streaming mode adds its own kind, a
snapshot of the segment being written: ``<segment>.LLLLLLLL.stream`` holds the segment's
first ``LLLLLLLL`` (hex) bytes, the rest being zeros (``walstream.py``). Each is stored as

    wal/<source>/<TTTTTTTT>/<name>.zst.age     age(zstd(file)), readable without Posterity
    wal/<source>/<TTTTTTTT>/<name>.json        its record: raw size and sha256, who pushed it

Timelines: a history file lists the switch points of every ancestor timeline. Recovery
towards timeline N reads, for each segment number, the file of the newest timeline of N's
chain that had begun by that segment — so the segment in which a switch happened is read
from the new timeline (PostgreSQL copied it there), and the old timeline's copy is the
``.partial`` nobody needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import kinds

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
PAYLOAD_SUFFIX = ".zst.age"
RECORD_SUFFIX = ".json"

_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_PARTIAL = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.partial$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
_BACKUP = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.[0-9A-F]{8}\.backup$")
_STREAM = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.[0-9A-F]{8}\.stream$")
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class WalNameError(ValueError):
    pass


@dataclass(frozen=True)
class WalName:
    name: str
    kind: str  # segment | partial | history | backup | stream
    timeline: int

    @property
    def tli(self) -> str:
        return f"{self.timeline:08X}"


def parse_name(name: str) -> WalName:
    """Classify a WAL file name; ``WalNameError`` for anything PostgreSQL would not archive."""
    for kind, pattern in (("segment", _SEGMENT), ("partial", _PARTIAL), ("history", _HISTORY), ("backup", _BACKUP),
                          ("stream", _STREAM)):
        m = pattern.match(name)
        if m:
            tli = int(m.group(1), 16)
            if tli == 0:
                break
            return WalName(name, kind, tli)
    raise WalNameError(f"{name!r} is not a WAL segment, .partial, .history or .backup file name")


def stream_name(segment: str, length: int) -> str:
    """The name of a streaming snapshot: the first ``length`` bytes of ``segment``."""
    return f"{segment}.{length:08X}.stream"


def stream_length(name: str) -> int:
    """How many leading bytes of its segment a ``.stream`` snapshot holds."""
    return int(name[25:33], 16)


def segments_per_id(segment_size: int) -> int:
    return 0x100000000 // segment_size


def segno_of(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Segment number of a segment (or .partial/.backup) name."""
    return int(name[8:16], 16) * segments_per_id(segment_size) + int(name[16:24], 16)


def segment_name(tli: int, segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per = segments_per_id(segment_size)
    return f"{tli:08X}{segno // per:08X}{segno % per:08X}"


def parse_lsn(text: str) -> int:
    m = _LSN.match(text.strip())
    if not m:
        raise WalNameError(f"{text!r} is not an LSN (write it like 0/3000158)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segno_of_lsn(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    return lsn // segment_size


# -- keys ----------------------------------------------------------------------------------


def wal_prefix(source: str, timeline: int | None = None) -> str:
    return f"wal/{source}/" if timeline is None else f"wal/{source}/{timeline:08X}/"


def payload_key(source: str, name: str) -> str:
    return f"{wal_prefix(source, parse_name(name).timeline)}{name}{PAYLOAD_SUFFIX}"


def record_key(source: str, name: str) -> str:
    return f"{wal_prefix(source, parse_name(name).timeline)}{name}{RECORD_SUFFIX}"


def parse_key(key: str) -> tuple[str, WalName, str] | None:
    """``wal/<source>/<tli>/<name><suffix>`` → (source, name, "payload"|"record"); None otherwise."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "wal":
        return None
    base = parts[3]
    for suffix, what in ((PAYLOAD_SUFFIX, "payload"), (RECORD_SUFFIX, "record")):
        if base.endswith(suffix):
            try:
                wn = parse_name(base[: -len(suffix)])
            except WalNameError:
                return None
            if wn.tli != parts[2]:
                return None
            return parts[1], wn, what
    return None


# -- timelines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """Timeline ``tli`` holds WAL from ``begin`` (inclusive) to ``end`` (exclusive; None: open)."""

    tli: int
    begin: int
    end: int | None


def parse_history(text: str, tli: int) -> list[TimelineEntry]:
    """The chain of timeline ``tli`` from its history file's text, oldest first."""
    entries: list[TimelineEntry] = []
    begin = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2:
            raise WalNameError(f"timeline history line {line!r} is not 'parentTLI switchpoint reason'")
        parent, switch = int(fields[0]), parse_lsn(fields[1])
        entries.append(TimelineEntry(parent, begin, switch))
        begin = switch
    entries.append(TimelineEntry(tli, begin, None))
    return entries


def chain_from(chain: Sequence[TimelineEntry], base_tli: int, base_stop_lsn: int) -> list[TimelineEntry] | None:
    """The part of ``chain`` a base backup on ``base_tli`` can follow, or None if it cannot.

    A backup can follow a chain when its timeline is in it and did not end before the
    backup became consistent (its stop LSN).
    """
    for i, entry in enumerate(chain):
        if entry.tli == base_tli:
            if entry.end is not None and entry.end < base_stop_lsn:
                return None
            return list(chain[i:])
    return None


def expected_files(
    chain: Sequence[TimelineEntry],
    start_segno: int,
    end_segno: int,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> list[str]:
    """Segment names recovery reads from ``start_segno`` to ``end_segno`` (inclusive) along ``chain``."""
    names: list[str] = []
    for i, entry in enumerate(chain):
        lo = start_segno if i == 0 else max(start_segno, segno_of_lsn(entry.begin, segment_size))
        hi = end_segno
        if entry.end is not None:
            # The segment holding the switch point is read from the next timeline.
            hi = min(hi, segno_of_lsn(entry.end, segment_size) - 1)
        names.extend(segment_name(entry.tli, s, segment_size) for s in range(lo, hi + 1))
    return names


# -- retention -----------------------------------------------------------------------------


def _facts_of(m: Any) -> dict[str, Any] | None:
    if not kinds.of(m).wal_archive:
        return None
    facts = getattr(m, "facts", None) or {}
    return facts if "wal_start_segment" in facts else None


def wal_keys_needed(manifests: Sequence[Any], wal_keys: Iterable[str] = ()) -> set[str]:
    """The ``wal/…`` keys the kept backups (``manifests``) need; prune deletes the rest.

    For each source that has kept physical base backups: every file at or after the start
    segment of some kept base backup, on that backup's timeline or a later one (a superset of
    what any point-in-time restore from a kept backup reads), plus every timeline history
    file. For a source with no kept base backup, every key is kept
    (a first base backup may be running, and WAL is cheap next to losing it). Payload and
    record of one file are kept or dropped together. Keys that are not WAL files are kept.
    """
    floors: dict[str, list[tuple[int, int, int]]] = {}  # source -> [(timeline, start segno, segment size)]
    for m in manifests:
        facts = _facts_of(m)
        if facts is None:
            continue
        size = int(facts.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)
        start = facts["wal_start_segment"]
        floors.setdefault(m.source, []).append((parse_name(start).timeline, segno_of(start, size), size))
    keys = list(wal_keys)
    superseded = superseded_stream_keys(keys)
    needed: set[str] = set()
    for key in keys:
        if key in superseded:
            continue
        parsed = parse_key(key)
        if parsed is None:
            needed.add(key)
            continue
        source, wn, _ = parsed
        bases = floors.get(source)
        if bases is None or wn.kind == "history":
            needed.add(key)
            continue
        if any(wn.timeline >= tli and segno_of(wn.name, size) >= segno for tli, segno, size in bases):
            needed.add(key)
    return needed


def superseded_stream_keys(wal_keys: Iterable[str]) -> set[str]:
    """Streaming snapshots nobody reads any more: their segment is archived whole, or a longer
    snapshot of the same segment exists (payload and record of each go together)."""
    complete: set[tuple[str, str]] = set()  # (source, segment) archived whole
    longest: dict[tuple[str, str], int] = {}
    streams: list[tuple[str, tuple[str, str], int]] = []  # (key, (source, segment), length)
    for key in wal_keys:
        parsed = parse_key(key)
        if parsed is None:
            continue
        source, wn, what = parsed
        if wn.kind == "segment" and what == "payload":
            complete.add((source, wn.name))
        elif wn.kind == "stream":
            seg, length = (source, wn.name[:24]), stream_length(wn.name)
            streams.append((key, seg, length))
            if what == "payload":
                longest[seg] = max(longest.get(seg, 0), length)
    return {key for key, seg, length in streams if seg in complete or length < longest.get(seg, 0)}


def wal_keys_unneeded(manifests: Sequence[Any], wal_keys: Iterable[str]) -> set[str]:
    """"WAL segments no kept backup needs": ``wal_keys`` minus ``wal_keys_needed``."""
    keys = list(wal_keys)
    return set(keys) - wal_keys_needed(manifests, keys)
