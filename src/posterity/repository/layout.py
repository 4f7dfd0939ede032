"""The storage layout. Every key is written once and never rewritten.

    posterity.json                               repository descriptor (recipients version 1)
    keys/recipients-<NNNNNN>.json                later versions of the recorded recipients
    backups/<source>/<backup-id>/<artifact>      payloads (age(zstd(...)))
    backups/<source>/<backup-id>/manifest.json   the commit record: a backup exists iff this exists
    points/<point-id>.json                       restore points (several sources taken together)
    wal/<source>/<timeline>/<segment>.zst.age    archived WAL
    locks/<name>.json                            exclusive locks (create-if-absent, with expiry)
    audit/<yyyy-mm-dd>/<timestamp>-<host>-<op>.json   append-only operation records
    probes/<timestamp>-<host>-<hex>.json         `posterity doctor`'s write probe (deleted after)
    drills/<source>/<drill-id>.json              restore drill reports

Every prefix is spelled here and nowhere else (``tests/test_layering.py`` checks).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

DESCRIPTOR = "posterity.json"
BACKUPS_PREFIX = "backups/"
POINTS_PREFIX = "points/"
LOCKS_PREFIX = "locks/"
AUDIT_PREFIX = "audit/"
DRILLS_PREFIX = "drills/"
WAL_PREFIX = "wal/"
MANIFEST = "manifest.json"
RECIPIENTS_PREFIX = "keys/"
PAYLOAD_SUFFIX = ".zst.age"

_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")


def new_backup_id(now: datetime | None = None) -> str:
    """Ids sort by time: ``20240115T020000Z-ab12``."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def is_backup_id(text: str) -> bool:
    return bool(_ID.match(text))


def id_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def backups_prefix(source: str | None = None) -> str:
    """Every backup, or every backup of ``source``."""
    return f"{BACKUPS_PREFIX}{source}/" if source else BACKUPS_PREFIX


def backup_prefix(source: str, backup_id: str) -> str:
    return f"{backups_prefix(source)}{backup_id}/"


def payload_key(source: str, backup_id: str, artifact: str) -> str:
    return f"{backup_prefix(source, backup_id)}{artifact}{PAYLOAD_SUFFIX}"


def manifest_key(source: str, backup_id: str) -> str:
    return f"{backup_prefix(source, backup_id)}{MANIFEST}"


def parse_backup_key(key: str) -> tuple[str, str, str] | None:
    """``backups/<source>/<id>/<rest>`` → (source, id, rest)."""
    parts = key.split("/", 3)
    if len(parts) != 4 or parts[0] + "/" != BACKUPS_PREFIX or not is_backup_id(parts[2]):
        return None
    return parts[1], parts[2], parts[3]


def point_key(point_id: str) -> str:
    return f"{POINTS_PREFIX}{point_id}.json"


def lock_key(name: str) -> str:
    return f"{LOCKS_PREFIX}{name}.json"


def drills_prefix(source: str | None = None) -> str:
    return f"{DRILLS_PREFIX}{source}/" if source else DRILLS_PREFIX


def drill_key(source: str, drill_id: str) -> str:
    return f"{drills_prefix(source)}{drill_id}.json"


def audit_key(when: datetime, host: str, op: str) -> str:
    safe_host = re.sub(r"[^A-Za-z0-9_.-]", "_", host)[:64]
    return f"{AUDIT_PREFIX}{when:%Y-%m-%d}/{when:%Y%m%dT%H%M%S.%fZ}-{safe_host}-{op}-{secrets.token_hex(2)}.json"


def probe_key(when: datetime, host: str) -> str:
    safe_host = re.sub(r"[^A-Za-z0-9_.-]", "_", host)[:64]
    return f"probes/{when:%Y%m%dT%H%M%S.%fZ}-{safe_host}-{secrets.token_hex(4)}.json"


def recipients_key(version: int) -> str:
    """Version ``version`` (2, 3, …) of the repository's recorded recipients."""
    return f"{RECIPIENTS_PREFIX}recipients-{version:06d}.json"


def parse_recipients_key(key: str) -> int | None:
    m = re.fullmatch(rf"{RECIPIENTS_PREFIX}recipients-(\d{{6}})\.json", key)
    return int(m.group(1)) if m else None
