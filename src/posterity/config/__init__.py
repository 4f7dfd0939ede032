"""posterity.toml: schema, loading with ${ENV} interpolation, and the generated example.

The names below are loaded on first use (PEP 562): ``config.plain`` — the rules the lean
archive_command entry shares with the loader — must be importable without pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .load import ConfigProblems, find_config, load_config, loads_config, parse_config
    from .schema import Config, EncryptionConfig, GeneralConfig, RepositoryConfig

_WHERE = {
    "ConfigProblems": "load",
    "find_config": "load",
    "load_config": "load",
    "loads_config": "load",
    "parse_config": "load",
    "Config": "schema",
    "EncryptionConfig": "schema",
    "GeneralConfig": "schema",
    "RepositoryConfig": "schema",
}

__all__ = [
    "Config",
    "ConfigProblems",
    "EncryptionConfig",
    "GeneralConfig",
    "RepositoryConfig",
    "find_config",
    "load_config",
    "loads_config",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
