"""What ``wal status`` says about each archived timeline: how many base backups of the source
were taken on it (a timeline without any may be a branch only a restored copy made), and —
when this host holds the identity to read history files — where it branched.

A restore follows, by default, the newest timeline the source's base backups are on
(``pitr_plan.choose_timeline``); these facts let a person see the same thing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..errors import PosterityError
from ..repository import walnames as wal
from ..repository.walarchive import ArchiveListing
from .context import Context


@dataclass
class TimelineFacts:
    base_backups: int  # of the source, taken on this timeline
    branched_from: int | None = None  # the parent timeline (None: unknown, or timeline 1)
    branched_at: str | None = None  # the LSN where it branched, "0/3000158"


def timeline_facts(ctx: Context, source: str, listing: ArchiveListing, bases: list[Any]) -> dict[int, TimelineFacts]:
    counts = Counter(int(m.facts.get("timeline") or 1) for m in bases)
    identities: list | None = None
    out: dict[int, TimelineFacts] = {}
    for tli in listing.timelines():
        facts = TimelineFacts(base_backups=counts.get(tli, 0))
        if tli > 1 and listing.has(f"{tli:08X}.history"):
            if identities is None:
                try:
                    identities = ctx.identities()
                except PosterityError:  # a backup host holds only recipients: no history contents
                    identities = []
            if identities:
                try:
                    chain = ctx.repo.wal(source).read_history(tli, identities)
                except PosterityError:
                    chain = []
                if len(chain) >= 2 and chain[-2].end is not None:
                    facts.branched_from, facts.branched_at = chain[-2].tli, wal.format_lsn(chain[-2].end)
        out[tli] = facts
    return out
