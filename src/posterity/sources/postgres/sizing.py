"""How large a base backup's tar will be, known before its first byte.

R2's multipart parts must all be equal, so the part size is fixed before the upload starts
(``storage.base.choose_part_size``); without an estimate it is the 8 MiB minimum, and a
stream past 10,000 × 8 MiB = 78 GiB fails after hours of work. A base backup is every
database's files plus the cluster-wide ones (``global``, ``pg_xact``, …; no ``pg_wal``:
Posterity runs pg_basebackup with ``--wal-method=none``). Compression only shrinks it, so
the uncompressed size is a safe estimate; ``choose_part_size`` adds its own margin.
"""

from __future__ import annotations

import logging

import psycopg

from ...errors import PosterityError
from .tools import connect

log = logging.getLogger(__name__)

#: The cluster-wide files outside any database (global catalogs, pg_xact, multixacts, the
#: backup manifest), generously.
CLUSTER_OVERHEAD = 256 * 1024 * 1024

_SQL = "SELECT sum(pg_database_size(oid))::bigint FROM pg_database"


def cluster_size(dsn: str) -> int | None:
    """Bytes of every database in the cluster plus its shared files; None when the role may
    not ask (the part size then falls back to the minimum, with a warning)."""
    try:
        with connect(dsn) as conn:
            row = conn.execute(_SQL).fetchone()
    except (psycopg.Error, PosterityError) as exc:
        log.warning("Could not estimate the size of the base backup (%s); it is uploaded in 8 MiB parts, "
                    "which R2 limits to 78 GiB.", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        return None
    if not row or row[0] is None:
        return None
    return int(row[0]) + CLUSTER_OVERHEAD
