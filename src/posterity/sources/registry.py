"""Source kinds: ``kind`` in a [sources.NAME] section → its config model and class.

A new source kind is one module and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from ..errors import ConfigError
from ..kinds import TRAITS, Traits


@dataclass(frozen=True)
class SourceEntry:
    model: type[BaseModel]
    factory: str  # "module:Class", imported lazily so the CLI starts fast
    example_name: str
    doctor: str  # "module:function" yielding `posterity doctor`'s checks for a source of this kind
    restorer: str = ""  # "module:attr": the kind's Restorer (operations/restore.py), "" when none
    drill: str = ""  # "module:function" taking a DrillRun (operations/drill.py), "" when none
    traits: Traits = field(default_factory=Traits)  # what other code may ask about the kind (kinds.py: lean, walfast reads it)


def _entries() -> dict[str, SourceEntry]:
    from .files.config import FilesConfig
    from .meilisearch.config import MeilisearchConfig
    from .postgres.config import PostgresConfig
    from .postgres.physical_config import PhysicalConfig

    return {
        "files": SourceEntry(FilesConfig, "posterity.sources.files.source:FilesSource", "config",
                             "posterity.operations.doctor_sources:files",
                             restorer="posterity.operations.restorers.files:RESTORER",
                             drill="posterity.operations.drill_files:drill_files"),
        "meilisearch": SourceEntry(
            MeilisearchConfig, "posterity.sources.meilisearch.source:MeilisearchSource", "search",
            "posterity.operations.doctor_sources:meilisearch",
            restorer="posterity.operations.restorers.meilisearch:RESTORER",
            drill="posterity.operations.drill_meilisearch:drill_meilisearch",
        ),
        "postgres": SourceEntry(PostgresConfig, "posterity.sources.postgres.logical:PostgresSource", "db",
                                "posterity.operations.doctor_postgres:logical",
                                restorer="posterity.operations.restorers.postgres:RESTORER",
                                drill="posterity.operations.drill_postgres:drill_postgres"),
        "postgres-physical": SourceEntry(
            PhysicalConfig, "posterity.sources.postgres.physical:PhysicalSource", "pitr",
            "posterity.operations.doctor_postgres:physical",
            restorer="posterity.operations.restorers.pitr:RESTORER",
            drill="posterity.operations.drill_pitr:drill_pitr",
        ),
    }


SOURCES: dict[str, SourceEntry] = {kind: replace(e, traits=TRAITS[kind]) for kind, e in _entries().items()}


def source_model(kind: Any) -> type[BaseModel]:
    if not isinstance(kind, str) or kind not in SOURCES:
        raise ConfigError(
            f"unknown source kind {kind!r}" if kind else "every source needs a kind",
            hint=f"use one of: {', '.join(sorted(SOURCES))}",
        )
    return SOURCES[kind].model


def make_source(name: str, config: Any):
    import importlib

    entry = SOURCES[config.kind]
    module, cls = entry.factory.split(":")
    return getattr(importlib.import_module(module), cls)(name, config)


def load(target: str) -> Any:
    """The object a lazy ``"module:attr"`` string of an entry names."""
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
