"""Which archived WAL segments the kept backups still need — the hook prune calls.

``prune`` calls ``wal_keys_needed(kept_manifests, wal_keys)`` after deciding which backups
to keep. Contract for whoever implements point-in-time recovery:

- return ``None`` to keep every WAL segment (what happens until PITR retention exists);
- or return the set of ``wal/…`` keys that must stay: every segment from the start of the
  oldest kept base backup onwards, per source and timeline (plus timeline history files),
  including segments archived while prune runs. ``prune`` then deletes the other keys in
  ``wal_keys`` (only for sources it is pruning, manifests first as always), and reports
  keys it may not delete yet (bucket locks) instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

from .manifest import Manifest


def wal_keys_needed(manifests: Sequence[Manifest], wal_keys: Sequence[str] = ()) -> set[str] | None:
    """The WAL keys the kept backups need, or ``None`` for "keep all WAL"."""
    return None
