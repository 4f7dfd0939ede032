"""The typed schema of posterity.toml.

One source for three things: validation (pydantic), the commented sample printed by
``posterity config example``, and the docs. Every field has a description and an example.
Source sections are validated by the model their ``kind`` registers (see
``posterity.sources.registry``), so a new source kind adds its own schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


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

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError("must be a URL like s3://bucket/prefix, r2://account/bucket/prefix or file:///path")
        scheme = v.split("://", 1)[0]
        if scheme not in ("s3", "r2", "file", "memory"):
            raise ValueError(f"unknown scheme {scheme!r}; use s3://, r2:// or file://")
        return v


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
        default=3, ge=1, le=19, description="zstd compression level (1 fast … 19 small).", json_schema_extra={"example": 3}
    )
    zstd_threads: int = Field(
        default=0,
        ge=-1,
        le=64,
        description="zstd worker threads: 0 compresses in the pipeline thread, -1 uses one per core.",
        json_schema_extra={"example": 0},
    )

    @field_validator("recipients")
    @classmethod
    def _recipients_look_right(cls, v: list[str]) -> list[str]:
        for r in v:
            if not r.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
                raise ValueError(f"{r[:12]!r}… is not an age public key (age1…)")
        return v


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


class Config(Section):
    repository: RepositoryConfig
    encryption: EncryptionConfig
    general: GeneralConfig = Field(default_factory=GeneralConfig)
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
