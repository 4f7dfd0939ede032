"""How many streams may be encoded and stored at once: the memory budget of parallel work.

Shared by the backup side (``operations/parallel_write``) and the restore side
(``sources/postgres/parallel_restore``), which both run several streams at once.
"""

from __future__ import annotations

MiB = 1 << 20
#: What one stream may hold: four 8 MiB upload parts, the zstd window and pipe buffers.
STREAM_MEMORY = 40 * MiB
#: Posterity's own memory for concurrent streams (peak RSS goal: < 200 MiB in all).
MEMORY_BUDGET = 160 * MiB


def stream_limit(jobs: int) -> int:
    """How many streams run at once for ``jobs`` workers (memory-capped)."""
    return max(1, min(jobs, MEMORY_BUDGET // STREAM_MEMORY))
