"""Retention: which backups to keep, as a pure function (no I/O, no clock).

The rules are restic's (``restic forget``), applied per source and per tag group:

- ``keep_last N``: the N newest backups;
- ``keep_hourly/daily/weekly/monthly/yearly N``: walking from the newest backup back,
  the newest backup of each of the last N hours/days/ISO weeks/months/years that *have*
  a backup (a gap in the schedule does not use up a slot);
- ``keep_within D``: every backup taken within D of the newest backup of the group —
  relative to the newest backup, not to now, so a schedule that stopped never lets the
  policy empty the repository.

A backup is kept when any rule of any of its groups keeps it; every reason is recorded.
A policy with no rule keeps everything (a missing [retention] never deletes). The newest
backup of each source is always kept, whatever the policy says.

Groups: a backup joins the group of every one of its tags that has a policy; a backup with
no such tag is in its source's default group. Buckets use UTC calendar boundaries.

Ties in time are broken by id, so the result never depends on the order of the input.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

NEWEST = "newest of source"
NO_POLICY = "no retention policy"


@dataclass(frozen=True)
class Policy:
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: timedelta | None = None

    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in _FIELDS)

    def describe(self) -> str:
        parts = []
        for f in _FIELDS:
            v = getattr(self, f)
            if v is not None:
                parts.append(f"{f}={_fmt(v)}")
        return ", ".join(parts) or "keep everything"


_FIELDS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within")


def _fmt(v: object) -> str:
    if isinstance(v, timedelta):
        from ..config.durations import format_duration

        return format_duration(v)
    return str(v)


@dataclass(frozen=True)
class Snapshot:
    """What retention needs to know about one committed backup."""

    id: str
    source: str
    time: datetime
    tags: frozenset[str] = frozenset()


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def rule(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "matched no keep rule"


_BUCKETS: tuple[tuple[str, str, Callable[[datetime], object]], ...] = (
    ("keep_hourly", "hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", "daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", "weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("keep_monthly", "monthly", lambda t: (t.year, t.month)),
    ("keep_yearly", "yearly", lambda t: t.year),
)


def _newest_first(snaps: Iterable[Snapshot]) -> list[Snapshot]:
    return sorted(snaps, key=lambda s: (s.time, s.id), reverse=True)


def apply_policy(snapshots: Iterable[Snapshot], policy: Policy, label: str = "") -> dict[str, list[str]]:
    """Run one policy over one group; returns id → reasons for every backup it keeps."""
    ordered = _newest_first(snapshots)
    where = f" [{label}]" if label else ""
    kept: dict[str, list[str]] = defaultdict(list)
    if not ordered:
        return {}
    if policy.empty():
        return {s.id: [NO_POLICY + where] for s in ordered}
    if policy.keep_last:
        for i, s in enumerate(ordered[: policy.keep_last]):
            kept[s.id].append(f"last {i + 1}/{policy.keep_last}{where}")
    for fname, word, bucket in _BUCKETS:
        n = getattr(policy, fname)
        if not n:
            continue
        last: object = None
        used = 0
        for s in ordered:
            if used >= n:
                break
            b = bucket(s.time)
            if b != last:
                used += 1
                last = b
                kept[s.id].append(f"{word} {used}/{n}{where}")
    if policy.keep_within is not None:
        newest = ordered[0].time
        from ..config.durations import format_duration

        for s in ordered:
            if newest - s.time <= policy.keep_within:
                kept[s.id].append(f"within {format_duration(policy.keep_within)} of newest{where}")
    return dict(kept)


PolicyFor = Callable[[str, str | None], Policy | None]
"""``policy_for(source, tag)``: the tag's policy (``None`` when the tag has none), or with
``tag=None`` the source's default policy (never ``None``)."""


def decide(snapshots: Sequence[Snapshot], policy_for: PolicyFor) -> list[Decision]:
    """Keep/remove for every backup, newest first within each source."""
    by_source: dict[str, list[Snapshot]] = defaultdict(list)
    for s in snapshots:
        by_source[s.source].append(s)
    out: list[Decision] = []
    for source in sorted(by_source):
        snaps = _newest_first(by_source[source])
        groups: dict[str | None, list[Snapshot]] = defaultdict(list)
        for s in snaps:
            tagged = [t for t in sorted(s.tags) if policy_for(source, t) is not None]
            for t in tagged:
                groups[t].append(s)
            if not tagged:
                groups[None].append(s)
        reasons: dict[str, list[str]] = defaultdict(list)
        for tag, members in groups.items():
            policy = policy_for(source, tag)
            assert policy is not None
            label = f"tag {tag}" if tag is not None else ""
            for sid, why in apply_policy(members, policy, label).items():
                reasons[sid].extend(why)
        newest = snaps[0]
        if NEWEST not in reasons[newest.id]:
            reasons[newest.id].insert(0, NEWEST)
        for s in snaps:
            why = reasons.get(s.id, [])
            out.append(Decision(s, bool(why), list(why)))
    return out


def policy_from_config(section: object) -> Policy:
    """A ``Policy`` from a [retention]-like config section (duck-typed: keep_* attributes)."""
    from ..config.durations import parse_duration

    within = getattr(section, "keep_within", None)
    return Policy(
        keep_last=getattr(section, "keep_last", None),
        keep_hourly=getattr(section, "keep_hourly", None),
        keep_daily=getattr(section, "keep_daily", None),
        keep_weekly=getattr(section, "keep_weekly", None),
        keep_monthly=getattr(section, "keep_monthly", None),
        keep_yearly=getattr(section, "keep_yearly", None),
        keep_within=parse_duration(within) if within else None,
    )


def resolver(retention: object) -> PolicyFor:
    """``policy_for`` from the [retention] config section, with its precedence:

    tag: [retention.sources.S.tags.T] else [retention.tags.T] else none;
    default: [retention.sources.S] when it sets any keep_*, else [retention]'s keep_*.
    """
    default = policy_from_config(retention)
    tags = {t: policy_from_config(p) for t, p in getattr(retention, "tags", {}).items()}
    per_source = getattr(retention, "sources", {})

    def policy_for(source: str, tag: str | None) -> Policy | None:
        sec = per_source.get(source)
        if tag is None:
            if sec is not None:
                own = policy_from_config(sec)
                if not own.empty():
                    return own
            return default
        if sec is not None and tag in getattr(sec, "tags", {}):
            return policy_from_config(sec.tags[tag])
        return tags.get(tag)

    return policy_for
