"""Everything an operation needs, built once from the configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..config import Config
from ..pipeline import Stages, load_identities
from ..repository import Repository
from ..repository.open import open_repository


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "posterity"


@dataclass
class Context:
    config: Config
    config_path: Path | None = None  # the file it came from (what restore_command must read)

    @cached_property
    def state_dir(self) -> Path:
        return Path(self.config.general.state_dir or default_state_dir())

    @cached_property
    def repo(self) -> Repository:
        return open_repository(self.config.repository, cache_dir=self.state_dir / "cache",
                               lock_ttl=self.config.general.lock_ttl)

    @cached_property
    def stages(self) -> Stages:
        e = self.config.encryption
        return Stages(tuple(e.recipients), zstd_level=e.zstd_level, zstd_threads=e.zstd_threads)

    def identities(self, identity_file: str | Path | None = None) -> list:
        return load_identities(identity_file or self.config.encryption.identity_file)

    @property
    def staging_dir(self) -> Path | None:
        return self.config.general.staging_dir
