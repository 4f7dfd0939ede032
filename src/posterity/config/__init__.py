"""posterity.toml: schema, loading with ${ENV} interpolation, and the generated example."""

from .load import ConfigProblems, find_config, load_config, loads_config, parse_config
from .schema import Config, EncryptionConfig, GeneralConfig, RepositoryConfig

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
