"""Which archived WAL segments the kept backups still need — the hook prune calls.

``prune`` calls ``wal_keys_needed(kept_manifests, wal_keys)`` with every manifest it keeps
(including backups whose manifest a bucket lock kept from being deleted) and the ``wal/…``
keys it listed. Contract:

- return ``None`` to keep every WAL segment;
- or return the set of keys that must stay; ``prune`` deletes the other listed keys, only
  for the sources it is pruning (not while one of their backups runs), and reports keys it
  may not delete yet (bucket locks) instead of failing. Segments archived after prune's
  listing are not in ``wal_keys`` and so are never deleted by that run.

The rule itself (every file from the start of the oldest kept base backup on, on its
timeline or later, plus history files; everything for a source with no kept base backup)
lives with the WAL naming code in ``walnames``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .manifest import Manifest


def wal_keys_needed(manifests: Sequence[Manifest], wal_keys: Sequence[str] = ()) -> set[str] | None:
    """The WAL keys the kept backups need, or ``None`` for "keep all WAL"."""
    from .walnames import wal_keys_needed as needed

    return needed(manifests, wal_keys)
