"""Plan a point-in-time restore before anything is written: which base backup, which
timeline, and every WAL segment recovery will read — all checked present in the archive.

The plan only lists and reads small objects (manifests, WAL records, timeline history
files); the restore (``pitr_restore.py``) then fetches and verifies the segments before it
touches the target directory.

Which segments "up to the target" means, per target kind:
- none (latest), ``--target-xid``, ``--target-name``: every segment to the newest archived
  one on the timeline (PostgreSQL cannot tell in advance where an xid or name lies);
- ``--target-lsn``: to the segment holding that LSN;
- ``--target-time``: to the first segment archived at or after that time. A segment
  archived before T holds only WAL written before T; the commit that ends recovery (the
  first after T) lies in a segment archived after T. If recovery needs segments beyond it,
  ``wal fetch`` serves them on demand.

Streaming mode also stores snapshots of the segment being written (``<segment>.<length>.stream``).
The newest snapshot of the segment after the newest complete one is the plan's ``tail``: a
restore to latest (or to a time or LSN it covers) puts it back, zero-padded, as the last
segment recovery reads, so nothing committed more than ``stream_interval`` before the server
was lost is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ... import kinds
from ...errors import BackupNotFound, ConfigError, ObjectNotFound, RestoreTargetError
from ...repository import Manifest
from ...repository import walnames as wal
from ...repository.walarchive import ArchivedFile, ArchiveListing, WalArchive


class TargetBeforeBackups(BackupNotFound):
    """No base backup is old enough for the recovery target."""

    default_hint = "Choose a later target, or restore from a base backup taken before it (`posterity list`)."


class TargetBeyondArchive(ObjectNotFound):
    """The recovery target lies after the newest archived WAL."""

    default_hint = ("Wait for the next segment to be archived (archive_timeout; or run `select pg_switch_wal()`), "
                    "or restore to latest; `posterity wal status` shows the newest archived segment.")


class WalGap(ObjectNotFound):
    """A WAL segment the restore needs is missing from the archive."""

    default_hint = ("Restore to a point before the missing segment (an earlier --target-time/--target-lsn), or from "
                    "a base backup taken after it; `posterity wal status` lists every gap.")


class TimelineMismatch(RestoreTargetError):
    """The requested timeline does not continue from the base backup."""

    default_hint = "Pass --target-timeline current (the backup's own), or the number of a timeline branched after it."


@dataclass
class Target:
    time: datetime | None = None
    lsn: str | None = None
    xid: str | None = None
    name: str | None = None
    action: str = "pause"
    timeline: str | None = None  # None / "latest" | "current" | a number

    def __post_init__(self) -> None:
        given = [k for k in ("time", "lsn", "xid", "name") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"Give at most one recovery target (got --target-{' and --target-'.join(given)}).")
        if self.time is not None and self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=UTC)
        if self.lsn is not None:
            try:
                wal.parse_lsn(self.lsn)
            except wal.WalNameError as exc:
                raise ConfigError(str(exc)) from exc
        if self.xid is not None and not str(self.xid).isdigit():
            raise ConfigError(f"--target-xid {self.xid!r} is not a transaction id (a number).")
        if self.timeline not in (None, "latest", "current") and not str(self.timeline).isdigit():
            raise ConfigError(f"--target-timeline {self.timeline!r}: use latest, current or a number.")

    @property
    def kind(self) -> str | None:
        for k in ("time", "lsn", "xid", "name"):
            if getattr(self, k) is not None:
                return k
        return None

    def describe(self) -> str:
        if self.time is not None:
            return f"time {self.time.isoformat()}"
        if self.lsn is not None:
            return f"lsn {self.lsn}"
        if self.xid is not None:
            return f"xid {self.xid}"
        if self.name is not None:
            return f"restore point {self.name!r}"
        return "latest"


@dataclass
class Plan:
    manifest: Manifest
    source: str
    timeline: int
    chain: list[wal.TimelineEntry]
    segments: list[str]  # present and to be fetched before anything is written
    segment_size: int
    newest: str | None
    notes: list[str] = field(default_factory=list)
    tail: str | None = None  # a streaming snapshot recovery reads after the last segment
    archive: WalArchive | None = None  # where the plan was made (the tail is looked up again if superseded)

    def to_dict(self) -> dict[str, Any]:
        return {"backup": self.manifest.id, "recovery_timeline": self.timeline, "wal_first": self.segments[0] if self.segments else None,
                "wal_last": self.segments[-1] if self.segments else None, "wal_segments": len(self.segments),
                "newest_archived": self.newest, "wal_tail": self.tail}


def _stop_time(m: Manifest) -> datetime:
    raw = m.facts.get("stop_time") or m.finished_at
    return datetime.fromisoformat(raw)


def _stop_lsn(m: Manifest) -> int:
    return wal.parse_lsn(m.facts["stop_lsn"])


def reachable(m: Manifest, target: Target) -> bool:
    """Can recovery from base backup ``m`` reach ``target``? (It must end after the backup did.)"""
    if target.time is not None:
        return _stop_time(m) <= target.time
    if target.lsn is not None:
        return _stop_lsn(m) <= wal.parse_lsn(target.lsn)
    return True


def choose_base(manifests: list[Manifest], ref: str, target: Target, source: str, find=None) -> Manifest:
    bases = [m for m in manifests if kinds.of(m).wal_archive and "stop_lsn" in m.facts]
    if ref != "latest":
        m = find(ref, source) if find else next((b for b in bases if b.id.startswith(ref)), None)
        if m is None:
            raise BackupNotFound(f"No base backup {ref!r} of source {source!r}.")
        if not kinds.of(m).wal_archive:
            raise ConfigError(f"Backup {m.id} is a {m.kind} backup, not a base backup.")
        if not reachable(m, target):
            raise TargetBeforeBackups(
                f"The recovery target ({target.describe()}) is before base backup {m.id} became consistent "
                f"(at {_stop_time(m).isoformat()}, LSN {m.facts['stop_lsn']}); recovery from it cannot stop there."
            )
        return m
    if not bases:
        raise BackupNotFound(f"There is no base backup of source {source!r} yet.", hint=f"Run `posterity backup {source}`.")
    fitting = [m for m in bases if reachable(m, target)]
    if not fitting:
        oldest = bases[0]
        raise TargetBeforeBackups(
            f"The recovery target ({target.describe()}) is before the oldest base backup of {source!r}: "
            f"{oldest.id}, restorable from {_stop_time(oldest).isoformat()} (LSN {oldest.facts['stop_lsn']})."
        )
    return max(fitting, key=lambda m: (_stop_lsn(m), m.id))


def choose_timeline(archive: WalArchive, listing: ArchiveListing, base: Manifest, target: Target,
                    identities: list, backup_timelines: set[int] | None = None,
                    notes: list[str] | None = None) -> tuple[int, list[wal.TimelineEntry]]:
    """The timeline recovery follows, and its history from the base backup on.

    Default: the newest timeline that a base backup of this source was taken on (the source
    server's own history) and that continues from ``base``. A branch only a restored copy
    made — a promoted test copy that archived — is never followed unless asked for with
    ``--target-timeline latest`` or its number; a sibling branch is named in ``notes``.
    """
    base_tli = int(base.facts.get("timeline") or 1)
    stop = _stop_lsn(base)
    with_history = {f.timeline for f in listing.complete("history")}
    if target.timeline == "current":
        candidates = [base_tli]
    elif target.timeline and target.timeline.isdigit():
        candidates = [int(target.timeline)]
    elif target.timeline == "latest":
        candidates = sorted(with_history | {base_tli}, reverse=True)
    else:
        own = {t for t in (backup_timelines or set()) if t in with_history} | {base_tli}
        candidates = sorted(own, reverse=True)
    chosen: tuple[int, list[wal.TimelineEntry]] | None = None
    for tli in candidates:
        if tli < base_tli:
            continue
        if tli > 1 and not listing.has(f"{tli:08X}.history"):
            raise WalGap(f"The history file {tli:08X}.history of timeline {tli} is not in the archive of {archive.source!r}.")
        chain = wal.chain_from(archive.read_history(tli, identities), base_tli, stop)
        if chain is not None:
            chosen = (tli, chain)
            break
        if len(candidates) == 1:
            raise TimelineMismatch(
                f"Timeline {tli} does not continue from base backup {base.id} (timeline {base_tli}, "
                f"consistent at {base.facts['stop_lsn']}).")
    if chosen is None:
        chosen = (base_tli, [wal.TimelineEntry(base_tli, 0, None)])
    if notes is not None:
        notes.extend(_siblings(archive, with_history, base, chosen[0], identities))
    return chosen


def _siblings(archive: WalArchive, timelines: set[int], base: Manifest, followed: int,
              identities: list) -> list[str]:
    """Notes on the other archived timelines that also continue from ``base``."""
    base_tli = int(base.facts.get("timeline") or 1)
    out: list[str] = []
    for tli in sorted(t for t in timelines if t > base_tli and t != followed):
        try:
            history = archive.read_history(tli, identities)
        except Exception:  # a damaged history file of a branch not followed: not this restore's business
            continue
        chain = wal.chain_from(history, base_tli, _stop_lsn(base))
        if chain is None or len(chain) < 2:
            continue
        parent = chain[-2]
        at = wal.format_lsn(parent.end) if parent.end is not None else "?"
        out.append(f"timeline {tli} (branched from timeline {parent.tli} at {at}) also continues from base backup "
                   f"{base.id}; this restore followed timeline {followed}. Pass --target-timeline {tli} to follow it.")
    return out


def _newest_on_chain(listing: ArchiveListing, chain: list[wal.TimelineEntry], start: int, size: int) -> int | None:
    best: int | None = None
    for i, entry in enumerate(chain):
        lo = start if i == 0 else wal.segno_of_lsn(entry.begin, size)
        hi = None if entry.end is None else wal.segno_of_lsn(entry.end, size) - 1
        for f in listing.complete("segment"):
            if f.timeline != entry.tli:
                continue
            s = wal.segno_of(f.name, size)
            if s >= lo and (hi is None or s <= hi) and (best is None or s > best):
                best = s
    return best


def _tail(listing: ArchiveListing, chain: list[wal.TimelineEntry], after: int, size: int) -> ArchivedFile | None:
    """The longest stored streaming snapshot of the segment that follows segment ``after``."""
    segment = wal.expected_files(chain, after + 1, after + 1, size)[-1]
    snaps = [f for f in listing.complete("stream") if f.name.startswith(segment + ".")]
    return max(snaps, key=lambda f: wal.stream_length(f.name)) if snaps else None


def plan_restore(archive: WalArchive, base: Manifest, target: Target, identities: list,
                 backup_timelines: set[int] | None = None) -> Plan:
    """Decide what the restore reads and check that all of it is archived.

    ``backup_timelines``: the timelines the source's base backups were taken on (see
    :func:`choose_timeline`)."""
    facts = base.facts
    size = int(facts.get("wal_segment_size") or wal.DEFAULT_SEGMENT_SIZE)
    source = archive.source
    listing = archive.listing()
    notes: list[str] = []
    tli, chain = choose_timeline(archive, listing, base, target, identities, backup_timelines, notes)
    start = wal.segno_of(facts["wal_start_segment"], size)
    minimum = wal.segno_of(facts["wal_stop_segment"], size)
    newest = _newest_on_chain(listing, chain, start, size)
    newest_name = None
    if newest is not None:
        newest_name = wal.expected_files(chain, newest, newest, size)[-1]
    tail = _tail(listing, chain, newest, size) if newest is not None else None
    end: int | None
    if target.lsn is not None:
        end = wal.segno_of_lsn(wal.parse_lsn(target.lsn), size)
        if tail is not None and newest is not None and end == newest + 1 and \
                wal.parse_lsn(target.lsn) % size < wal.stream_length(tail.name):
            end = newest  # the snapshot covers the target
        elif newest is None or end > newest:
            raise TargetBeyondArchive(
                f"The target LSN {target.lsn} is after the newest archived WAL of {source!r} "
                f"({newest_name or 'none archived'}).")
    elif target.time is not None:
        end = None
        for name in wal.expected_files(chain, start, newest if newest is not None else start, size):
            f = listing.files.get(name)
            if f is not None and f.complete and f.archived_at is not None and f.archived_at >= target.time:
                end = wal.segno_of(name, size)
                break
        if end is None and tail is not None and tail.archived_at is not None and tail.archived_at >= target.time:
            end = newest  # the streaming snapshot was stored after the target: it holds the stopping commit
        if end is None:
            when = listing.files[newest_name].archived_at if newest_name else None
            raise TargetBeyondArchive(
                f"The target time {target.time.isoformat()} is after the newest archived WAL of {source!r} "
                f"({newest_name or 'none'}{f', archived {when.isoformat()}' if when else ''}); recovery could not "
                "find where to stop.")
    else:
        end = newest if newest is not None else minimum
    segments = wal.expected_files(chain, start, max(end, minimum), size)
    missing = [n for n in segments if not listing.has(n)]
    if missing:
        more = f" and {len(missing) - 1} more (up to {missing[-1]})" if len(missing) > 1 else ""
        raise WalGap(
            f"WAL segment {missing[0]}{more} is missing from the archive of {source!r}; restoring base backup "
            f"{base.id} to {target.describe()} needs every segment from {segments[0]} to {segments[-1]}. "
            "Nothing was written.")
    # The snapshot is read after the newest segment whenever recovery may go that far: for
    # latest/xid/name, a time target (the commit that ends recovery may lie only there) and an
    # LSN target in the newest segment (the record at the target may end in the next one).
    use_tail = tail is not None and end == newest and segments[-1] == newest_name
    return Plan(base, source, tli, chain, segments, size, newest_name, notes=notes,
                tail=tail.name if use_tail and tail else None, archive=archive)
