"""The reversible transforms between a source's bytes and the stored bytes.

Backup: raw → zstd (frame checksum on) → age (X25519 recipients) → sha256/size → store.
Restore undoes exactly what the manifest's stage specs say, so a backup taken years ago is
read with the settings it was written with, not today's defaults.

This module says which stages apply (``Stages``, recorded in the manifest as ``specs()``);
``encode.py`` runs them forwards and ``decode.py`` backwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError

CHUNK = 1 << 20
MAX_AUTO_THREADS = 4


@dataclass(frozen=True)
class Stages:
    """Which transforms to apply; ``specs()`` is what the manifest records."""

    recipients: tuple[str, ...]
    zstd_level: int = 3
    zstd_threads: int = 0

    @property
    def compressor_threads(self) -> int:
        """zstd workers to use: ``-1`` is one per core, at most MAX_AUTO_THREADS (each costs
        ~20 MiB); on one core, none (compress in the pipeline thread)."""
        if self.zstd_threads != -1:
            return self.zstd_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return min(cores, MAX_AUTO_THREADS) if cores > 1 else 0

    def specs(self) -> list[dict[str, Any]]:
        return [
            {"name": "zstd", "level": self.zstd_level, "checksum": True},
            {"name": "age", "kind": "x25519", "recipients": list(self.recipients)},
        ]


def check_specs(specs: list[dict[str, Any]]) -> None:
    names = [s.get("name") for s in specs]
    if names != ["zstd", "age"]:
        raise IntegrityError(
            f"Unsupported stage list {names}; this Posterity reads zstd then age.",
            hint="Use the Posterity version named in the manifest, or restore by hand (README).",
        )

