"""The typed schema of posterity.toml.

One source for three things: validation (pydantic), the commented sample printed by
``posterity config example``, and the docs. Every field has a description and an example.
Source sections are validated by the model their ``kind`` registers (see
``posterity.sources.registry``), so a new source kind adds its own schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, field_validator

from . import plain
from .durations import check_duration
from .schema_daemon import DaemonConfig, NotifyConfig, ScheduleConfig, WebConfig
from .section import Section

__all__ = ["Config", "DaemonConfig", "EncryptionConfig", "GeneralConfig", "NotifyConfig", "RepositoryConfig",
           "RetentionConfig", "RetentionPolicy", "ScheduleConfig", "Section", "SourceRetention", "WebConfig"]


class RepositoryConfig(Section):
    url: str = Field(
        description="Where backups are stored: s3://bucket/prefix, r2://<account-id>/<bucket>/<prefix> or file:///path.",
        json_schema_extra={"example": "r2://0123456789abcdef/posters-science-backups/prod"},
    )
    endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL (optional for AWS and r2://; needed for other S3-compatible servers).",
        json_schema_extra={"example": "https://0123456789abcdef.r2.cloudflarestorage.com"},
    )
    region: str = Field(default="auto", description="S3 region; R2 uses auto.", json_schema_extra={"example": "auto"})
    access_key_id: SecretStr | None = Field(
        default=None,
        description="Access key id; use ${ENV_VAR} to keep it out of the file.",
        json_schema_extra={"example": "${R2_ACCESS_KEY_ID}"},
    )
    secret_access_key: SecretStr | None = Field(
        default=None,
        description="Secret access key; use ${ENV_VAR} to keep it out of the file.",
        json_schema_extra={"example": "${R2_SECRET_ACCESS_KEY}"},
    )
    connect_timeout: float = Field(
        default=10, gt=plain.CONNECT_TIMEOUT[0], le=plain.CONNECT_TIMEOUT[1],
        description="Seconds to wait for a connection to the object store before the attempt fails (and is retried).",
        json_schema_extra={"example": 10},
    )
    request_timeout: float = Field(
        default=60, gt=plain.REQUEST_TIMEOUT[0], le=plain.REQUEST_TIMEOUT[1],
        description="Seconds one request may take, including the upload of one part, before it fails (and is "
        "retried); raise it on slow links with large parts. A stalled store fails a call in about "
        "2 x request_timeout + 25 s.",
        json_schema_extra={"example": 60},
    )
    max_part_size_mib: int = Field(
        default=512, ge=plain.MAX_PART_SIZE_MIB[0], le=plain.MAX_PART_SIZE_MIB[1],
        description="Ceiling on the multipart part size in MiB; a stream estimated too large for 10,000 such "
        "parts is refused before it starts. About four parts are held in memory while uploading.",
        json_schema_extra={"example": 512},
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return plain.check_store_url(v)


class EncryptionConfig(Section):
    recipients: list[str] = Field(
        min_length=1,
        description="age public keys (age1…) every backup is encrypted to. Backup hosts need only these.",
        json_schema_extra={"example": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]},
    )
    identity_file: Path | None = Field(
        default=None,
        description="age identity (private key) file; needed only to restore or verify. Keep it offline where you can.",
        json_schema_extra={"example": "/etc/posterity/key.txt"},
    )
    zstd_level: int = Field(
        default=plain.ZSTD_LEVEL_DEFAULT,
        ge=plain.ZSTD_LEVEL[0],
        le=plain.ZSTD_LEVEL[1],
        description="zstd compression level (1 fast … 19 small). The default 1 took a third less CPU than 3 "
        "at about the same stored size (docs/benchmarks.md); a restore reads any level.",
        json_schema_extra={"example": 1},
    )
    zstd_threads: int = Field(
        default=-1,
        ge=plain.ZSTD_THREADS[0],
        le=plain.ZSTD_THREADS[1],
        description="zstd worker threads: -1 one per core (at most 4, ~20 MiB each), 0 compresses in the "
        "pipeline thread (least memory), N exactly N.",
        json_schema_extra={"example": -1},
    )

    @field_validator("recipients")
    @classmethod
    def _recipients_look_right(cls, v: list[str]) -> list[str]:
        return plain.check_recipients(v)


class GeneralConfig(Section):
    staging_dir: Path | None = Field(
        default=None,
        description="Folder for temporary files (parallel restore staging); defaults to TMPDIR.",
        json_schema_extra={"example": "/var/tmp/posterity"},
    )
    state_dir: Path | None = Field(
        default=None,
        description="Folder for local state (catalog cache, local audit log); defaults to ~/.local/state/posterity.",
        json_schema_extra={"example": "/var/lib/posterity"},
    )
    lock_ttl: int = Field(
        default=3600,
        ge=60,
        description="Seconds after which another host may take over a lock whose owner stopped refreshing it.",
        json_schema_extra={"example": 3600},
    )
    max_age: str | None = Field(
        default=None,
        description="Default freshness target for every source (a source's own max_age wins): "
        "`posterity status` fails and the daemon alerts when the newest backup is older.",
        json_schema_extra={"example": "26h"},
    )
    backup_timeout: str = Field(
        default="6h",
        description="Deadline of one source's backup: a dump still running after this long (stopped, blocked "
        "on a lock, stalled) is ended, nothing of it committed, exit 14.",
        json_schema_extra={"example": "6h"},
    )

    @field_validator("max_age")
    @classmethod
    def _max_age_parses(cls, v: str | None) -> str | None:
        return check_duration(v)

    @field_validator("backup_timeout")
    @classmethod
    def _timeout_parses(cls, v: str) -> str:
        check_duration(v)
        return v


class RetentionPolicy(Section):
    """One restic-style policy. A backup is kept when any rule keeps it; no rule at all keeps everything."""

    keep_last: int | None = Field(
        default=None, ge=1, description="Keep the newest N backups.", json_schema_extra={"example": 3}
    )
    keep_hourly: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the last N hours that have one.",
        json_schema_extra={"example": 24},
    )
    keep_daily: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the last N days (UTC) that have one.",
        json_schema_extra={"example": 7},
    )
    keep_weekly: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the last N ISO weeks that have one.",
        json_schema_extra={"example": 4},
    )
    keep_monthly: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the last N months that have one.",
        json_schema_extra={"example": 12},
    )
    keep_yearly: int | None = Field(
        default=None, ge=1, description="Keep the newest backup of each of the last N years that have one.",
        json_schema_extra={"example": 7},
    )
    keep_within: str | None = Field(
        default=None,
        description="Keep every backup taken within this duration of the newest one (not of now, so a "
        "stopped schedule never empties the repository).",
        json_schema_extra={"example": "14d"},
    )

    @field_validator("keep_within")
    @classmethod
    def _within_parses(cls, v: str | None) -> str | None:
        return check_duration(v)


class SourceRetention(RetentionPolicy):
    tags: dict[str, RetentionPolicy] = Field(
        default_factory=dict,
        description="Per-tag policies for this source; they replace [retention.tags.TAG] for it.",
        json_schema_extra={"example": {"weekly": {"keep_weekly": 104}}},
    )


class RetentionConfig(RetentionPolicy):
    """``[retention]``: the default policy, per-tag and per-source policies, and orphan cleanup.

    Which policy decides a backup: each of its tags that has a policy puts it in that tag's
    group ([retention.sources.S.tags.T], else [retention.tags.T]); a backup with no such tag
    is in the default group, decided by [retention.sources.S] when that sets any keep_*, else
    by the keep_* of [retention]. It is kept when any of its groups keeps it, and the newest
    backup of every source is always kept.
    """

    uncommitted_grace: str = Field(
        default="24h",
        description="Payloads of a backup that never committed (killed, crashed) are removed by prune once "
        "the backup id is older than this.",
        json_schema_extra={"example": "24h"},
    )
    tags: dict[str, RetentionPolicy] = Field(
        default_factory=dict,
        description="Per-tag policies, e.g. [retention.tags.weekly] keep_weekly = 52.",
        json_schema_extra={"example": {"daily": {"keep_within": "7d"}, "weekly": {"keep_weekly": 52},
                                       "monthly": {"keep_monthly": 84}}},
    )
    sources: dict[str, SourceRetention] = Field(
        default_factory=dict,
        description="Per-source policies, e.g. [retention.sources.db] keep_daily = 14.",
        json_schema_extra={"example": {"db": {"keep_daily": 14}}},
    )

    @field_validator("uncommitted_grace")
    @classmethod
    def _grace_parses(cls, v: str) -> str:
        check_duration(v)
        return v


class Config(Section):
    repository: RepositoryConfig
    encryption: EncryptionConfig
    general: GeneralConfig = Field(default_factory=GeneralConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    schedule: list[ScheduleConfig] = Field(default_factory=list)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    web: WebConfig | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule_names_unique(cls, v: list[ScheduleConfig]) -> list[ScheduleConfig]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"[[schedule]] names must be unique; {', '.join(dupes)} appear more than once")
        return v
    sources: dict[str, Any] = Field(default_factory=dict)

    # Filled by the loader: name -> validated source model.
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    def source(self, name: str) -> Any:
        from ..errors import ConfigError

        if name not in self.sources:
            known = ", ".join(sorted(self.sources)) or "none"
            raise ConfigError(
                f"No source named {name!r} in the configuration (configured: {known}).",
                hint="Add a [sources.NAME] section or pick one of the configured names.",
            )
        return self.sources[name]
