"""Schema of a [sources.NAME] section with kind = "postgres-physical" (base backups + WAL).

Kept apart from ``physical.py`` so that loading the configuration (which every command,
including each ``wal push`` run by PostgreSQL, does) imports pydantic only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class PhysicalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["postgres-physical"] = Field(
        description="A whole PostgreSQL cluster: pg_basebackup base backups plus continuous WAL archiving, "
        "restorable to any moment (point-in-time recovery)."
    )
    dsn: SecretStr = Field(
        description="libpq connection string of a role with REPLICATION (used by pg_basebackup and for "
        "`posterity wal status`). Passwords: PGPASSWORD, ~/.pgpass or ${ENV}.",
        json_schema_extra={"example": "postgresql://replicator@localhost:5432/postgres"},
    )
    data_directory: Path | None = Field(
        default=None,
        description="The server's data directory, for `wal status` (counts the .ready files waiting to be archived).",
        json_schema_extra={"example": "/var/lib/postgresql/15/main"},
    )
    wal: Literal["archive", "stream"] = Field(
        default="archive",
        description='How WAL reaches the repository: "archive" (archive_command = \'posterity wal push %p\'). '
        '"stream" (pg_receivewal) is not built yet and is rejected by `backup`.',
        json_schema_extra={"example": "archive"},
    )
    bin_dir: Path | None = Field(
        default=None,
        description="Folder with pg_basebackup/pg_ctl; by default the installed version that fits the server.",
        json_schema_extra={"example": "/usr/lib/postgresql/15/bin"},
    )
    checkpoint: Literal["fast", "spread"] = Field(
        default="fast",
        description="Checkpoint that starts a base backup: fast (start now, a burst of I/O) or spread "
        "(gentle, may wait up to checkpoint_timeout).",
        json_schema_extra={"example": "fast"},
    )
    manifest_checksums: Literal["CRC32C", "SHA224", "SHA256", "SHA384", "SHA512", "NONE"] = Field(
        default="CRC32C",
        description="Checksum of every file in PostgreSQL's backup_manifest (checked by pg_verifybackup).",
        json_schema_extra={"example": "CRC32C"},
    )
    archive_wait: int = Field(
        default=300,
        ge=5,
        description="Seconds a base backup waits for its last WAL segment to be archived before it fails.",
        json_schema_extra={"example": 300},
    )
    max_age: str | None = Field(
        default=None,
        description="Freshness target for base backups: an older newest backup makes `posterity status` fail.",
        json_schema_extra={"example": "8d"},
    )
