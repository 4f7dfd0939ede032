"""Schema of a [sources.NAME] section with kind = "postgres"."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Check(BaseModel):
    """One user-defined drill check: a query on the restored database and the range its answer must lie in."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        min_length=1,
        description="A read-only query answering one number (first column of the first row).",
        json_schema_extra={"example": "select count(*) from posters"},
    )
    min: float | None = Field(default=None, description="The answer must be at least this.", json_schema_extra={"example": 1})
    max: float | None = Field(default=None, description="The answer must be at most this.", json_schema_extra={"example": 1000000})
    description: str | None = Field(
        default=None, description="What the check proves, shown in the drill report.",
        json_schema_extra={"example": "posters survived the restore"},
    )


class PostgresConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["postgres"] = Field(description="A PostgreSQL database, backed up with pg_dump.")
    dsn: SecretStr = Field(
        description="libpq connection URI or key=value string of the database to back up. "
        "Passwords: PGPASSWORD, ~/.pgpass or ${ENV} here (never shown, passed to pg_dump by environment).",
        json_schema_extra={"example": "postgresql://postgres@localhost:5432/posters_science"},
    )
    globals: bool = Field(
        default=True,
        description="Also back up roles and tablespaces (pg_dumpall --globals-only), so a new server gets its roles.",
        json_schema_extra={"example": True},
    )
    row_counts: Literal["exact", "estimate", "off"] = Field(
        default="exact",
        description="Record per-table row counts in the manifest (exact: counted in the dump's own snapshot).",
        json_schema_extra={"example": "exact"},
    )
    bin_dir: Path | None = Field(
        default=None,
        description="Folder with pg_dump/pg_restore; by default the newest installed version that fits the server.",
        json_schema_extra={"example": "/usr/lib/postgresql/15/bin"},
    )
    exclude_table_data: list[str] = Field(
        default_factory=list,
        description="Tables whose data is not dumped (schema only), as pg_dump patterns.",
        json_schema_extra={"example": ["public.sessions"]},
    )
    max_age: str | None = Field(
        default=None,
        description="Freshness target: a backup older than this makes `posterity status` fail.",
        json_schema_extra={"example": "26h"},
    )
    lock_wait_timeout: str | None = Field(
        default=None,
        pattern=r"^\d+\s*(ms|s|min|h|d)?$",
        description="Give up (the backup fails, nothing is committed) when pg_dump waits longer than this "
        "for a table lock, e.g. behind a migration; by default it waits without limit. "
        "pg_dump ignores lock_timeout set elsewhere.",
        json_schema_extra={"example": "10min"},
    )
    jobs: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Parallel pg_dump/pg_restore workers for backups and restores of this source "
        "(`--jobs` overrides); by default the number of cores, at most 8. With more than one, a "
        "database larger than part_size_mib is stored as a schema archive plus data archives.",
        json_schema_extra={"example": 4},
    )
    part_size_mib: int = Field(
        default=64,
        ge=0,
        description="With jobs > 1: tables at least this large (MiB, on disk) get their own data archive, "
        "smaller ones are batched to about this size; a smaller database stays one archive.",
        json_schema_extra={"example": 64},
    )
    drill: Literal["temp-cluster", "scratch-db"] = Field(
        default="temp-cluster",
        description="Where `posterity drill` restores: a temporary PostgreSQL cluster started from the local "
        "server binaries (temp-cluster), or a scratch database on this source's own server (scratch-db).",
        json_schema_extra={"example": "temp-cluster"},
    )
    checks: list[Check] = Field(
        default_factory=list,
        description="Checks `posterity drill` runs on the restored database, beside the row counts "
        "([[sources.NAME.checks]] tables with sql, min, max).",
        json_schema_extra={"example": [{"sql": "select count(*) from posters", "min": 1}]},
    )
