"""The daemon's sections of posterity.toml: ``[[schedule]]``, ``[daemon]``, ``[notify]``, ``[web]``.

Part of the one schema (``schema.py`` re-exports them): validation, the commented sample
and the docs all come from these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from .durations import check_duration
from .section import Section


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
