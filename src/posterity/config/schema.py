"""The typed schema of posterity.toml.

One source for three things: validation (pydantic), the commented sample printed by
``posterity config example``, and the docs. Every field has a description and an example.
Source sections are validated by the model their ``kind`` registers (see
``posterity.sources.registry``), so a new source kind adds its own schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from . import plain
from .durations import check_duration


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
        default=3, ge=plain.ZSTD_LEVEL[0], le=plain.ZSTD_LEVEL[1], description="zstd compression level (1 fast … 19 small).", json_schema_extra={"example": 3}
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


class ScheduleConfig(Section):
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Name of the job (lowercase letters, digits, - and _); used in logs, metrics and unit names.",
        json_schema_extra={"example": "daily"},
    )
    cron: str = Field(
        description="When to run, as a cron expression (minute hour day month weekday) in [daemon] timezone; "
        "a sixth leading field gives seconds.",
        json_schema_extra={"example": "0 2 * * *"},
    )
    sources: list[str] = Field(
        default_factory=list,
        description="Sources to back up, in order; empty means every configured source.",
        json_schema_extra={"example": ["db"]},
    )
    tag: str | None = Field(
        default=None,
        description="Tag given to the backups of this job, so [retention.tags.TAG] can keep them apart.",
        json_schema_extra={"example": "daily"},
    )
    jitter: str = Field(
        default="0s",
        description="Start each run up to this much later, at random (spreads many hosts' load).",
        json_schema_extra={"example": "5m"},
    )
    ping_url: str | None = Field(
        default=None,
        description="Healthchecks-style URL: GET URL/start when the job starts, URL on success, URL/fail on failure.",
        json_schema_extra={"example": "https://hc-ping.com/${HC_DAILY_UUID}"},
    )
    backup: bool = Field(
        default=True,
        description="Back up the job's sources (false: a drill-only job).",
        json_schema_extra={"example": True},
    )
    drill: bool = Field(
        default=False,
        description="After the backups, restore-drill the latest backup of each drillable source "
        "(`posterity drill`); a failed drill notifies like a failed backup.",
        json_schema_extra={"example": False},
    )

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, v: str) -> str:
        from ..scheduler.cron import parse_cron

        parse_cron(v)
        return v

    timeout: str = Field(
        default="6h",
        description="Deadline of one run of the job: a run still going after this long is cancelled (the backup "
        "in flight is stopped, nothing of it committed), recorded failed and notified.",
        json_schema_extra={"example": "6h"},
    )

    @field_validator("jitter", "timeout")
    @classmethod
    def _jitter_parses(cls, v: str) -> str:
        check_duration(v)
        return v


class DaemonConfig(Section):
    timezone: str = Field(
        default="UTC", description="Time zone the [[schedule]] cron expressions are read in.",
        json_schema_extra={"example": "UTC"},
    )
    metrics_listen: str | None = Field(
        default="127.0.0.1:9850",
        description="HOST:PORT where the daemon serves Prometheus /metrics and /healthz; empty to disable.",
        json_schema_extra={"example": "127.0.0.1:9850"},
    )
    prune: bool = Field(
        default=True, description="Prune the job's sources after each scheduled run.", json_schema_extra={"example": True}
    )
    catch_up: bool = Field(
        default=True,
        description="After downtime that missed runs, run each such job once at start-up (never a burst).",
        json_schema_extra={"example": True},
    )
    retries: int = Field(
        default=3, ge=0, le=20,
        description="Retries of a source's backup after a transient error (store or source unreachable, lock held).",
        json_schema_extra={"example": 3},
    )
    retry_backoff: str = Field(
        default="30s", description="Wait before the first retry; doubled each time, at most 10 minutes.",
        json_schema_extra={"example": "30s"},
    )
    stop_timeout: str = Field(
        default="80s",
        description="On SIGTERM, how long a backup in flight may take to finish before it is abandoned uncommitted "
        "(keep below systemd's TimeoutStopSec).",
        json_schema_extra={"example": "80s"},
    )
    check_interval: str = Field(
        default="5m", description="How often the daemon checks every source's freshness (staleness alerts).",
        json_schema_extra={"example": "5m"},
    )

    @field_validator("retry_backoff", "stop_timeout", "check_interval")
    @classmethod
    def _durations_parse(cls, v: str) -> str:
        check_duration(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception as exc:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name like UTC or Europe/Berlin") from exc
        return v


NotifyEvent = Literal["failure", "recovery", "stale", "size_anomaly", "success"]
DEFAULT_EVENTS: tuple[NotifyEvent, ...] = ("failure", "recovery", "stale", "size_anomaly")


class NotifyConfig(Section):
    urls: list[SecretStr] = Field(
        default_factory=list,
        description="apprise URLs to notify (Slack, e-mail, webhooks, …); keep tokens in ${ENV}.",
        json_schema_extra={"example": ["slack://${SLACK_TOKEN}/#backups", "mailto://${SMTP_USER}:${SMTP_PASSWORD}@example.org"]},
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="Which events notify: failure, recovery, stale, size_anomaly, success.",
        json_schema_extra={"example": ["failure", "recovery", "stale", "size_anomaly"]},
    )
    size_anomaly_ratio: float = Field(
        default=0.5, gt=0, lt=1,
        description="A backup smaller than this fraction of the median of the previous ones is an anomaly "
        "(the classic sign of an empty or truncated dump).",
        json_schema_extra={"example": 0.5},
    )
    size_anomaly_window: int = Field(
        default=5, ge=2, le=100, description="How many previous backups the median is taken over.",
        json_schema_extra={"example": 5},
    )


class WebConfig(Section):
    listen: str = Field(
        default="127.0.0.1:9851",
        description="HOST:PORT where `posterity web` and the daemon serve the read-only dashboard. Any address "
        "but loopback needs a token.",
        json_schema_extra={"example": "127.0.0.1:9851"},
    )
    token: SecretStr | None = Field(
        default=None,
        description="Token the dashboard asks for (Authorization: Bearer, or its login form); required to listen "
        "on anything but loopback. Keep it in ${ENV}.",
        json_schema_extra={"example": "${POSTERITY_WEB_TOKEN}"},
    )
    cache_seconds: float = Field(
        default=30.0, ge=0, le=3600,
        description="How long the dashboard reuses what it read from the repository before reading again.",
        json_schema_extra={"example": 30},
    )


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
