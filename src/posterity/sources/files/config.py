"""Schema of a [sources.NAME] section with kind = "files"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FilesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["files"] = Field(
        description="Files and folders (configuration), stored as one pax tar."
    )
    paths: list[str] = Field(
        min_length=1,
        description="Absolute paths of files and folders to back up. Folders are taken whole; "
        "symlinks are stored as links, never followed. A path that is missing or unreadable fails the backup.",
        json_schema_extra={
            "example": ["/etc/posters-science", "/etc/nginx/sites-enabled", "/etc/meilisearch.toml"]
        },
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Glob patterns left out: without a '/' they match a name anywhere (*.tmp); "
        "with one they match the path (** spans folders, so **/cache/** skips every cache folder's content).",
        json_schema_extra={"example": ["*.tmp", "**/cache/**"]},
    )
    restore_to: Path | None = Field(
        default=None,
        description="Default folder for `posterity restore` and restore points (files land under it at their "
        "original paths, e.g. DIR/etc/nginx/...). Without it, restores need --to.",
        json_schema_extra={"example": "/var/restore/config"},
    )
    max_age: str | None = Field(
        default=None,
        description="Freshness target: a backup older than this makes `posterity status` fail.",
        json_schema_extra={"example": "26h"},
    )

    @field_validator("paths")
    @classmethod
    def _absolute(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for p in v:
            if not p.startswith("/"):
                raise ValueError(
                    f"{p!r} is not an absolute path; write it from / (e.g. /etc/nginx)"
                )
            norm = os.path.normpath(p)
            if norm.startswith("//"):
                norm = "/" + norm.lstrip("/")
            if norm == "/":
                raise ValueError(
                    "'/' is the whole system; name the folders to back up (e.g. /etc/nginx)"
                )
            if norm not in out:
                out.append(norm)
        return out

    @field_validator("exclude")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.strip():
                raise ValueError("an exclude pattern is empty")
        return v
