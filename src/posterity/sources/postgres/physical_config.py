"""Schema of a [sources.NAME] section with kind = "postgres-physical" (base backups + WAL).

Kept apart from ``physical.py`` so that loading the configuration (which every command,
including each ``wal push`` run by PostgreSQL, does) imports pydantic only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .config import Check


class PhysicalCheck(Check):
    """A drill check on a recovered cluster: which database it asks."""

    database: str = Field(default="postgres", description="The database the query runs in.",
                          json_schema_extra={"example": "posters_science"})


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
        description='How WAL reaches the repository: "archive" (archive_command = \'posterity wal push %p\'; '
        'RPO: archive_timeout) or "stream" (pg_receivewal through a replication slot that Posterity manages, run '
        'by `posterity wal stream` or the daemon; completed segments and, every stream_interval, the segment '
        'being written are stored: RPO of seconds).',
        json_schema_extra={"example": "archive"},
    )
    slot: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,63}$",
        description='Streaming mode: the physical replication slot (created if missing); default "posterity_<source>". '
        "The server keeps WAL for the slot until it is streamed: set max_slot_wal_keep_size so a stopped "
        "streamer cannot fill the server's disk.",
        json_schema_extra={"example": "posterity_pitr"},
    )
    stream_directory: Path | None = Field(
        default=None,
        description="Streaming mode: local folder pg_receivewal writes into (segments leave it once stored); "
        "default <state_dir>/walstream/<source>.",
        json_schema_extra={"example": "/var/lib/posterity/walstream/pitr"},
    )
    stream_interval: float = Field(
        default=1.0,
        ge=0.2,
        le=300,
        description="Streaming mode: seconds between snapshots of the segment being written (only when it grew). "
        "This is the RPO; each snapshot is two object writes.",
        json_schema_extra={"example": 1.0},
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
        description="Seconds a base backup waits for every WAL segment it needs to be stored in this repository "
        "(archived or streamed), and at most how long the server may wait for archiving at its end, before it "
        "fails (exit 5).",
        json_schema_extra={"example": 300},
    )
    archive_alert_after: str = Field(
        default="15m",
        description="Archiving alert: `posterity status` and the daemon alert when archive_command has been failing "
        "this long (PostgreSQL keeps every unarchived segment in pg_wal meanwhile).",
        json_schema_extra={"example": "15m"},
    )
    ready_alert: int = Field(
        default=64,
        ge=1,
        description="Archiving alert: this many segments waiting to be archived (.ready files) is a backlog worth "
        "an alert (64 = 1 GiB of 16 MiB segments).",
        json_schema_extra={"example": 64},
    )
    wal_disk_alert: int = Field(
        default=80,
        ge=1,
        le=99,
        description="Archiving alert: percent full of pg_wal's file system at which to alert (needs this host to "
        "see the data directory).",
        json_schema_extra={"example": 80},
    )
    wal_disk_alert_within: str = Field(
        default="1h",
        description="Archiving alert: also alert when, at the current fill rate, pg_wal's disk would pass "
        "wal_disk_alert within this time.",
        json_schema_extra={"example": "1h"},
    )
    checks: list[PhysicalCheck] = Field(
        default_factory=list,
        description="Queries a restore drill runs on the recovered cluster, each with the range its answer must "
        "lie in ([[sources.NAME.checks]] tables with sql, min, max, and database).",
    )
    max_age: str | None = Field(
        default=None,
        description="Freshness target for base backups: an older newest backup makes `posterity status` fail.",
        json_schema_extra={"example": "8d"},
    )

    @field_validator("archive_alert_after", "wal_disk_alert_within")
    @classmethod
    def _durations_parse(cls, v: str) -> str:
        from ...config.durations import parse_duration

        parse_duration(v)
        return v

    def slot_name(self, source: str) -> str:
        """The replication slot streaming mode uses for ``source``."""
        if self.slot:
            return self.slot
        import re

        return ("posterity_" + re.sub(r"[^a-z0-9_]", "_", source.lower()))[:63]
