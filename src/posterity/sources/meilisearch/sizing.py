"""How large an index export will be, known before its first byte (see
``postgres/sizing.py`` for why R2 needs it).

An export is the index's documents as JSON lines. Meilisearch reports the size of its whole
database (``GET /stats`` → ``databaseSize``): every index's documents plus their search
structures, which are several times the documents themselves, so it bounds the export of
any one index from above with room to spare; ``choose_part_size`` adds its own margin.
"""

from __future__ import annotations

from typing import Any


def export_size(facts: dict[str, Any]) -> int | None:
    """The estimate for one index's export from the facts ``check`` gathered; None when unknown."""
    stats = facts.get("stats") or {}
    size = stats.get("databaseSize")
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None
