"""What each Meilisearch version does differently, for the routes Posterity uses.

The test server keeps one superset of state (every setting any version knows) and asks a
``Behaviour`` how the emulated version shows it, validates it and dumps it. Every rule below
names the real source it copies (github.com/meilisearch/meilisearch at that tag; paths are
``crates/…`` from v1.9, top-level ``meilisearch/…``, ``meilisearch-types/…`` before).

Versions the tests run (``MATRIX``): a ≤1.8 server, 1.12, 1.16 and a current one (≥1.39).
Any other ``x.y.z`` works; rules switch at the version the cited source changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .store import MeiliError

MATRIX = ("1.8.0", "1.12.0", "1.16.0", "1.39.0")

OLD_DEFAULT_RULES = ["words", "typo", "proximity", "attribute", "sort", "exactness"]
# crates/milli/src/criterion.rs default_criteria() (v1.36.0 and v1.39.0).
NEW_DEFAULT_RULES = ["words", "typo", "proximity", "attributeRank", "sort", "wordPosition", "exactness"]


def parse(version: str) -> tuple[int, int, int]:
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in version.split(".")[:3]]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major, minor, patch


@dataclass(frozen=True)
class Behaviour:
    version: str

    @property
    def v(self) -> tuple[int, int, int]:
        return parse(self.version)

    # ---- routes

    @property
    def has_snapshot_route(self) -> bool:
        # meilisearch/src/routes/snapshot.rs appears in v1.5.0 (absent in v1.4.0).
        return self.v >= (1, 5, 0)

    @property
    def has_fetch_route(self) -> bool:
        # meilisearch/src/routes/indexes/documents.rs: documents_by_query_post (POST
        # …/documents/fetch) appears in v1.2.0 (absent in v1.1.0).
        return self.v >= (1, 2, 0)

    @property
    def has_features_route(self) -> bool:
        # meilisearch/src/routes/features.rs appears in v1.3.0 (absent in v1.2.0).
        return self.v >= (1, 3, 0)

    @property
    def has_batches(self) -> bool:
        # crates/dump/src/writer.rs (v1.13.0) adds batches/queue.jsonl and network.json, and tasks
        # gain `batchUid` (crates/meilisearch-types/src/task_view.rs); v1.12.0 has neither.
        return self.v >= (1, 13, 0)

    @property
    def dumps_chat_settings(self) -> bool:
        # crates/dump/src/writer.rs (v1.16.0): create_chat_completions_settings → a
        # chat-completions-settings/ folder (chat arrived in v1.15.1).
        return self.v >= (1, 15, 1)

    @property
    def tasks_have_total(self) -> bool:
        # meilisearch/src/routes/tasks.rs `struct AllTasks`: `total` added in v1.3.0
        # (v1.0.0–v1.2.0 answer {results, limit, from, next}).
        return self.v >= (1, 3, 0)

    @property
    def knows_retrieve_vectors(self) -> bool:
        # meilisearch/src/routes/indexes/documents.rs (v1.8.0): BrowseQuery/BrowseQueryGet are
        # `deny_unknown_fields` without `retrieveVectors`; the field arrives in v1.9.0.
        return self.v >= (1, 9, 0)

    @property
    def vector_store_gated(self) -> bool:
        # crates/index-scheduler/src/features.rs check_vector (v1.12.0): embedders and
        # retrieveVectors need the `vectorStore` feature until it became stable in v1.13.0.
        return (1, 3, 0) <= self.v < (1, 13, 0)

    # ---- experimental features

    def default_features(self) -> dict[str, bool]:
        if self.v < (1, 10, 0):
            # meilisearch-types/src/features.rs RuntimeTogglableFeatures (v1.8.0)
            return {"vectorStore": False, "metrics": False, "logsRoute": False, "exportPuffinReports": False}
        if self.v < (1, 13, 0):
            # crates/meilisearch-types/src/features.rs (v1.12.0)
            return {"vectorStore": False, "metrics": False, "logsRoute": False,
                    "editDocumentsByFunction": False, "containsFilter": False}
        names = ["metrics", "logsRoute", "editDocumentsByFunction", "containsFilter", "network",
                 "getTaskDocumentsRoute", "compositeEmbedders", "chatCompletions", "multimodal"]
        if self.v >= (1, 39, 0):
            names.append("foreignKeys")  # crates/meilisearch-types/src/features.rs (v1.39.0)
        # crates/meilisearch-types/src/features.rs (v1.16.0)
        return dict.fromkeys(names, False)

    # ---- settings

    def setting_names(self) -> list[str]:
        # `pub struct Settings<T>` in meilisearch-types/src/settings.rs at each tag.
        names = ["displayedAttributes", "searchableAttributes", "filterableAttributes", "sortableAttributes",
                 "rankingRules", "stopWords", "nonSeparatorTokens", "separatorTokens", "dictionary",
                 "synonyms", "distinctAttribute", "proximityPrecision", "typoTolerance", "faceting",
                 "pagination", "embedders", "searchCutoffMs"]
        if self.v >= (1, 10, 0):
            names.append("localizedAttributes")  # v1.10.0
        if self.v >= (1, 12, 0):
            names += ["facetSearch", "prefixSearch"]  # v1.12.0
        if self.v >= (1, 15, 1):
            names.append("chat")  # v1.15.1
        if self.v >= (1, 39, 0):
            names.insert(4, "foreignKeys")  # v1.39.0
        return names

    def _shown(self, settings: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(settings[k]) for k in self.setting_names() if k in settings}
        if self.v < (1, 15, 0):
            # crates/meilisearch-types/src/settings.rs TypoSettings: disable_on_numbers from v1.15.0.
            out["typoTolerance"].pop("disableOnNumbers", None)
        if self.v < (1, 13, 0) and not out.get("embedders"):
            # crates/meilisearch-types/src/settings.rs settings() (v1.12.0): no embedders → NotSet,
            # so the key is absent; from v1.13.0 `embedders: {}` is always written.
            out.pop("embedders", None)
        if self.v >= (1, 36, 0) and out.get("rankingRules") == OLD_DEFAULT_RULES:
            # crates/milli/src/criterion.rs default_criteria() (v1.36.0): the default splits
            # `attribute` into `attributeRank` and `wordPosition`. (The test server cannot tell an
            # explicit old default from the default; a real server can.)
            out["rankingRules"] = list(NEW_DEFAULT_RULES)
        return out

    def get_settings(self, settings: dict[str, Any], features: dict[str, bool]) -> dict[str, Any]:
        out = self._shown(settings)
        # crates/meilisearch/src/routes/indexes/settings.rs get_all (v1.39.0): chat and
        # foreignKeys are only shown when their experimental feature is on.
        if not features.get("chatCompletions"):
            out.pop("chat", None)
        if not features.get("foreignKeys"):
            out.pop("foreignKeys", None)
        return out

    def dump_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        # crates/dump/src/writer.rs + settings() with SecretPolicy::RevealSecrets: every field
        # the version knows, chat (v1.15.1) and foreignKeys (v1.39.0) included, feature or not.
        return self._shown(settings)

    def check_settings(self, patch: Any, features: dict[str, bool]) -> None:
        """What PATCH /indexes/{uid}/settings refuses synchronously on this version."""
        if not isinstance(patch, dict):
            return
        known = self.setting_names()
        for name in patch:
            if name not in known:
                # deserr `deny_unknown_fields` on Settings<Unchecked>: code bad_request.
                expected = ", ".join(f"`{n}`" for n in known)
                raise MeiliError(400, "bad_request", f"Unknown field `{name}`: expected one of {expected}")
        typo = patch.get("typoTolerance")
        if isinstance(typo, dict) and "disableOnNumbers" in typo and self.v < (1, 15, 0):
            raise MeiliError(400, "invalid_settings_typo_tolerance",
                             "Unknown field `disableOnNumbers` inside `.typoTolerance`: expected one of "
                             "`enabled`, `minWordSizeForTypos`, `disableOnWords`, `disableOnAttributes`")
        rules = patch.get("rankingRules")
        if isinstance(rules, list) and self.v < (1, 36, 0):
            # crates/milli/src/criterion.rs FromStr (v1.35.0) knows no attributeRank/wordPosition.
            for rule in rules:
                if rule in ("attributeRank", "wordPosition"):
                    raise MeiliError(400, "invalid_settings_ranking_rules",
                                     f"Invalid value at `.rankingRules[{rules.index(rule)}]`: `{rule}` ranking rule "
                                     "is invalid. Valid ranking rules are words, typo, sort, proximity, attribute, "
                                     "exactness and custom ranking rules.")
        gates = []
        if self.vector_store_gated and patch.get("embedders") is not None:
            # crates/meilisearch/src/routes/indexes/settings.rs validate_settings (v1.12.0)
            gates.append(("vectorStore", "Passing `embedders` in settings", "vector store",
                          "https://github.com/meilisearch/product/discussions/677"))
        if "chat" in patch and patch["chat"] is not None:
            # validate_settings (v1.16.0, v1.39.0): `Setting::Set(_chat)` → check_chat_completions
            gates.append(("chatCompletions", "setting `chat` in the index settings", "chat completions",
                          "https://github.com/orgs/meilisearch/discussions/835"))
        if "foreignKeys" in patch and patch["foreignKeys"] is not None:
            # validate_settings (v1.39.0) → check_foreign_keys_setting, even for `[]`
            gates.append(("foreignKeys", "setting `foreignKeys` in the index settings", "foreign_keys",
                          "https://github.com/orgs/meilisearch/discussions/873"))
        for flag, action, feature, link in gates:
            if not features.get(flag):
                raise feature_not_enabled(action, feature, link)

    # ---- documents

    def check_retrieve_vectors(self, asked: bool, present: bool, features: dict[str, bool], get: bool) -> None:
        if not self.knows_retrieve_vectors:
            if present:
                # deserr deny_unknown_fields on BrowseQuery / BrowseQueryGet (v1.8.0)
                what = "parameter" if get else "field"
                raise MeiliError(400, "bad_request", f"Unknown {what} `retrieveVectors`: expected one of "
                                 "`offset`, `limit`, `fields`, `filter`")
            return
        if asked and self.vector_store_gated and not features.get("vectorStore"):
            # crates/meilisearch/src/search/mod.rs RetrieveVectors::new (v1.12.0)
            raise feature_not_enabled("Passing `retrieveVectors` as a parameter", "vector store",
                                      "https://github.com/meilisearch/product/discussions/677")

    def vectors_shown(self, asked: bool, features: dict[str, bool]) -> bool:
        """Whether a returned document carries its ``_vectors``."""
        if self.v < (1, 9, 0):
            return True  # ≤1.8: `_vectors` is an ordinary stored field
        if self.vector_store_gated and not features.get("vectorStore"):
            return True  # RetrieveVectors::Ignore (v1.12.0): the field is left as stored
        return asked  # Hide / Retrieve

    # ---- snapshots

    @staticmethod
    def snapshot_name(db_path_name: str) -> str:
        # crates/index-scheduler/src/scheduler/process_snapshot_creation.rs (v1.39.0) and
        # crates/index-scheduler/src/batch.rs (v1.12.0): `format!("{}.snapshot", db_name)` with
        # db_name the last component of --db-path ("data.ms" only if it has none).
        return f"{db_path_name or 'data.ms'}.snapshot"


def feature_not_enabled(action: str, feature: str, link: str) -> MeiliError:
    # crates/index-scheduler/src/error.rs FeatureNotEnabledError → Code::FeatureNotEnabled (400).
    return MeiliError(400, "feature_not_enabled",
                      f"{action} requires enabling the `{feature}` experimental feature. See {link}")
