"""Schema of a [sources.NAME] section with kind = "meilisearch"."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ...config.durations import check_duration

Mode = Literal["snapshot", "dump", "export"]


def _default_modes() -> list[Mode]:
    return ["export"]


class MeilisearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["meilisearch"] = Field(
        description="A Meilisearch instance: snapshots, dumps and/or an API export of every index."
    )
    url: str = Field(
        description="Base URL of the Meilisearch server.",
        json_schema_extra={"example": "http://localhost:7700"},
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Master key (or an admin key) sent as Bearer token; use ${ENV} to keep it out of the file. "
        "Reading API key definitions needs the master key.",
        json_schema_extra={"example": "${MEILI_MASTER_KEY}"},
    )
    modes: list[Mode] = Field(
        default_factory=_default_modes,
        min_length=1,
        description="What each backup stores: snapshot (POST /snapshots, same-version restore, needs snapshot_dir), "
        "dump (POST /dumps, portable to newer versions, needs dump_dir), export (API only: settings and "
        "documents of every index as NDJSON; works from another host and with Meilisearch Cloud).",
        json_schema_extra={"example": ["snapshot", "export"]},
    )
    snapshot_dir: Path | None = Field(
        default=None,
        description="Meilisearch's --snapshot-dir, readable by Posterity (same host); needed for mode snapshot.",
        json_schema_extra={"example": "/var/lib/meilisearch/snapshots"},
    )
    db_path: Path | None = Field(
        default=None,
        description="Meilisearch's --db-path (optional). A snapshot is named after its last component "
        "(--db-path /var/lib/meilisearch/data writes data.snapshot); without it Posterity takes the one "
        "*.snapshot file the snapshot task wrote in snapshot_dir.",
        json_schema_extra={"example": "/var/lib/meilisearch/data"},
    )
    dump_dir: Path | None = Field(
        default=None,
        description="Meilisearch's --dump-dir, readable (and writable, to delete stored dumps) by Posterity; "
        "needed for mode dump.",
        json_schema_extra={"example": "/var/lib/meilisearch/dumps"},
    )
    indexes: list[str] = Field(
        default_factory=list,
        description="Index uids (shell patterns allowed) the export covers; empty means every index. "
        "Snapshots and dumps always hold the whole instance.",
        json_schema_extra={"example": ["posters", "authors_*"]},
    )
    task_timeout: int = Field(
        default=3600,
        ge=1,
        description="Seconds to wait for one Meilisearch task (snapshot, dump, document batch, swap) before giving up.",
        json_schema_extra={"example": 3600},
    )
    page_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Documents fetched per request by the export (and the most held in memory at once).",
        json_schema_extra={"example": 1000},
    )
    restart_command: str | None = Field(
        default=None,
        description="Shell command run by `restore --snapshot-to/--dump-to` to stop Meilisearch and start it "
        "importing the file: {flag} becomes --import-snapshot or --import-dump and {path} the file (also in "
        "$MEILI_IMPORT_FLAG and $MEILI_IMPORT_PATH). Posterity then waits for /health and checks the counts. "
        "Without it, the steps are printed.",
        json_schema_extra={"example": "sudo /usr/local/sbin/meili-import {flag} {path}"},
    )
    max_age: str | None = Field(
        default=None,
        description="Freshness target: a backup older than this makes `posterity status` fail.",
        json_schema_extra={"example": "26h"},
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:7700")
        return v.rstrip("/")

    @field_validator("modes")
    @classmethod
    def _unique(cls, v: list[Mode]) -> list[Mode]:
        if len(set(v)) != len(v):
            raise ValueError("list each mode once (snapshot, dump, export)")
        return v

    @field_validator("max_age")
    @classmethod
    def _max_age_parses(cls, v: str | None) -> str | None:
        return check_duration(v)

    @model_validator(mode="after")
    def _dirs_for_modes(self) -> MeilisearchConfig:
        if "snapshot" in self.modes and self.snapshot_dir is None:
            raise ValueError("mode snapshot needs snapshot_dir (Meilisearch's --snapshot-dir on this host)")
        if "dump" in self.modes and self.dump_dir is None:
            raise ValueError("mode dump needs dump_dir (Meilisearch's --dump-dir on this host)")
        return self
