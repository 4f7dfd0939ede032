"""What a Meilisearch server accepts, by version and experimental features.

Meilisearch changes its API between minor versions; these are the differences that break a
backup or a restore, each from Meilisearch's own source (github.com/meilisearch/meilisearch):

- ``GET /tasks`` has ``total`` from v1.3.0 (``routes/tasks.rs`` ``AllTasks``).
- ``POST /snapshots`` exists from v1.5.0 (``routes/snapshot.rs``).
- ``retrieveVectors`` is an unknown field before v1.9.0 (``routes/indexes/documents.rs``,
  ``deny_unknown_fields``) and needs the ``vectorStore`` feature until v1.12 (``search/mod.rs``
  ``RetrieveVectors::new``); the same gate applies to the ``embedders`` setting.
- Index settings gain fields over time (``meilisearch-types/src/settings.rs``):
  ``localizedAttributes`` v1.10, ``facetSearch``/``prefixSearch`` v1.12, ``chat`` v1.15.1,
  ``foreignKeys`` v1.39; ``typoTolerance.disableOnNumbers`` v1.15; ranking rules
  ``attributeRank``/``wordPosition`` v1.36 (``milli/src/criterion.rs``).
- ``PATCH …/settings`` refuses ``chat`` or ``foreignKeys`` — even at their defaults — unless the
  ``chatCompletions``/``foreignKeys`` feature is on (``routes/indexes/settings.rs``
  ``validate_settings``), and a dump writes both for every index (v1.15.1 / v1.39.0).

``adapt_settings`` turns backed-up settings into what the target accepts and says what it left
out and why, so a restore never fails on a setting the backup did not really use.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

Version = tuple[int, int, int]

BASE_SETTINGS = (
    "displayedAttributes", "searchableAttributes", "filterableAttributes", "sortableAttributes", "rankingRules",
    "stopWords", "nonSeparatorTokens", "separatorTokens", "dictionary", "synonyms", "distinctAttribute",
    "proximityPrecision", "typoTolerance", "faceting", "pagination", "embedders", "searchCutoffMs",
)
# (setting, first version that knows it)
ADDED_SETTINGS: tuple[tuple[str, Version], ...] = (
    ("localizedAttributes", (1, 10, 0)),
    ("facetSearch", (1, 12, 0)),
    ("prefixSearch", (1, 12, 0)),
    ("chat", (1, 15, 1)),
    ("foreignKeys", (1, 39, 0)),
)
# Experimental settings: (setting, feature that must be on, how a dump writes it untouched)
GATED_SETTINGS = {"chat": "chatCompletions", "foreignKeys": "foreignKeys"}
# milli/src/prompt/mod.rs default_template_text() and update/chat.rs (v1.16.0).
DEFAULT_CHAT_TEMPLATE = (
    "{% for field in fields %}{% if field.is_searchable and field.value != nil %}"
    "{{ field.name }}: {{ field.value }}\n{% endif %}{% endfor %}"
)
_UNKNOWN_FIELD = re.compile(r"Unknown field `([^`]+)`")


def parse_version(text: str | None) -> Version | None:
    """``"1.12.3"`` → ``(1, 12, 3)``; None when it is not a version (a Cloud build, a proxy)."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass
class ServerInfo:
    """One server's version and experimental features (None: unknown or not readable)."""

    version: Version | None
    features: dict[str, Any] | None

    def at_least(self, *v: int) -> bool:
        # An unknown version is taken as current: newer servers are the common case.
        return self.version is None or self.version >= (*v, 0, 0, 0)[:3]

    def feature(self, name: str) -> bool | None:
        """Whether an experimental feature is on; None when the features could not be read."""
        if self.features is None:
            return None
        return bool(self.features.get(name))

    @property
    def tasks_have_total(self) -> bool:
        return self.at_least(1, 3)

    @property
    def has_snapshot_route(self) -> bool:
        return self.at_least(1, 5)

    @property
    def vector_store_gated(self) -> bool:
        return self.version is not None and (1, 3, 0) <= self.version < (1, 13, 0)

    @property
    def vectors_retrievable(self) -> bool:
        """Whether documents can be asked for with ``retrieveVectors: true``."""
        if not self.at_least(1, 9):
            return False  # unknown field: `_vectors` is an ordinary field, returned as stored
        if self.vector_store_gated:
            # Off: `_vectors` come back as stored (Ignore). Unknown: ask, and the client stops
            # asking if the server answers feature_not_enabled.
            return self.feature("vectorStore") is not False
        return True

    def knows_setting(self, name: str) -> bool:
        if name in BASE_SETTINGS:
            return True
        for added, since in ADDED_SETTINGS:
            if added == name:
                return self.at_least(*since)
        return True  # a setting newer than this table: the server judges (settings_restore.py)


@dataclass
class Adapted:
    settings: dict[str, Any]
    dropped: list[str] = field(default_factory=list)  # one sentence per setting left out or changed


def _is_default_chat(value: Any) -> bool:
    if not isinstance(value, dict):
        return value is None
    return (
        value.get("description") in (None, "")
        and value.get("documentTemplate") in (None, DEFAULT_CHAT_TEMPLATE)
        and value.get("documentTemplateMaxBytes") in (None, 400)
        and not value.get("searchParameters")
        and set(value) <= {"description", "documentTemplate", "documentTemplateMaxBytes", "searchParameters"}
    )


def is_default(name: str, value: Any) -> bool:
    """Whether a setting's value is what Meilisearch writes for it when it was never set."""
    if name == "chat":
        return _is_default_chat(value)
    if name == "foreignKeys":
        return not value
    if name == "embedders":
        return not value
    return value is None


def adapt_settings(settings: dict[str, Any], server: ServerInfo) -> Adapted:
    """The part of ``settings`` that ``server`` accepts, and a note for everything left out."""
    out = copy.deepcopy(settings)
    dropped: list[str] = []
    version = ".".join(map(str, server.version)) if server.version else "unknown"
    for name in list(out):
        if not server.knows_setting(name):
            value = out.pop(name)
            if not is_default(name, value):
                shown = ", ".join(map(repr, value)) if name == "embedders" else f"= {_short(value)}"
                dropped.append(f"`{name}` {shown} was left out: Meilisearch {version} does not know this setting")
            continue
        flag = GATED_SETTINGS.get(name)
        if flag and server.feature(flag) is False:  # unknown: the server judges (settings_restore)
            value = out.pop(name)
            if not is_default(name, value):
                dropped.append(
                    f"`{name}` = {_short(value)} was left out: the `{flag}` experimental feature is off on the target; "
                    f"enable it with PATCH /experimental-features {{\"{flag}\": true}} and restore again to keep it"
                )
    if server.vector_store_gated and "embedders" in out and server.feature("vectorStore") is False:
        value = out.pop("embedders")
        if value:
            dropped.append(
                f"`embedders` {', '.join(map(repr, value))} were left out: the `vectorStore` experimental feature is "
                f"off on Meilisearch {version}; enable it with PATCH /experimental-features {{\"vectorStore\": true}} "
                "and restore again to keep them"
            )
    typo = out.get("typoTolerance")
    if isinstance(typo, dict) and "disableOnNumbers" in typo and not server.at_least(1, 15):
        value = typo.pop("disableOnNumbers")
        if value:
            dropped.append(f"`typoTolerance.disableOnNumbers` = true was left out: Meilisearch {version} does not know it")
    rules = out.get("rankingRules")
    if isinstance(rules, list) and not server.at_least(1, 36) and {"attributeRank", "wordPosition"} & set(rules):
        # v1.36 split `attribute` into these two; older servers only know the pair as `attribute`.
        new: list[str] = []
        for rule in rules:
            rule = "attribute" if rule in ("attributeRank", "wordPosition") else rule
            if rule not in new:
                new.append(rule)
        out["rankingRules"] = new
        dropped.append(
            f"`rankingRules` {rules} was restored as {new}: Meilisearch {version} knows `attribute`, "
            "not `attributeRank`/`wordPosition`"
        )
    return Adapted(out, dropped)


def unknown_field(message: str) -> str | None:
    """The top-level setting a ``bad_request`` "Unknown field `x`" refusal names."""
    m = _UNKNOWN_FIELD.search(message)
    if m and " inside " not in message[m.end(): m.end() + 10]:
        return m.group(1)
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"
