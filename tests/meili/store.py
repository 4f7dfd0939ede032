"""In-memory state of the Meilisearch test server: indexes, documents, settings, keys, tasks.

Everything here is plain data guarded by ``Store.lock``; the HTTP handlers and the task worker
take that lock for every read or write.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DOCS_LINK = "https://docs.meilisearch.com/errors#"


def now() -> datetime:
    return datetime.now(UTC)


def fmt_time(dt: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` suffix, as Meilisearch prints it."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts at most 6 fractional digits; Meilisearch prints up to 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def fmt_duration(delta: timedelta) -> str:
    """ISO 8601 duration like ``PT0.012345S``."""
    return f"PT{delta.total_seconds():.6f}".rstrip("0").rstrip(".") + "S"


class MeiliError(Exception):
    """An error shaped like Meilisearch's ``{message, code, type, link}``."""

    def __init__(self, status: int, code: str, message: str, type_: str = "invalid_request"):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_

    def body(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "code": self.code,
            "type": self.type,
            "link": DOCS_LINK + self.code,
        }


def index_not_found(uid: str) -> MeiliError:
    return MeiliError(404, "index_not_found", f"Index `{uid}` not found.")


# --------------------------------------------------------------------------- settings

# milli/src/prompt/mod.rs default_template_text() + update/chat.rs From<ChatConfig> (v1.16.0):
# an index's chat settings when never touched (a dump from v1.15.1 on writes them).
DEFAULT_CHAT: dict[str, Any] = {
    "description": "",
    "documentTemplate": "{% for field in fields %}{% if field.is_searchable and field.value != nil %}"
    "{{ field.name }}: {{ field.value }}\n{% endif %}{% endfor %}",
    "documentTemplateMaxBytes": 400,
    "searchParameters": {},
}
DEFAULT_RANKING_RULES = ["words", "typo", "proximity", "attribute", "sort", "exactness"]


def default_settings() -> dict[str, Any]:
    """Every setting any emulated version knows, at its default (``versions.py`` shows each
    version its own subset)."""
    return {
        "displayedAttributes": ["*"],
        "searchableAttributes": ["*"],
        "filterableAttributes": [],
        "sortableAttributes": [],
        "rankingRules": list(DEFAULT_RANKING_RULES),
        "stopWords": [],
        "nonSeparatorTokens": [],
        "separatorTokens": [],
        "dictionary": [],
        "synonyms": {},
        "distinctAttribute": None,
        "proximityPrecision": "byWord",
        "typoTolerance": {
            "enabled": True,
            "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
            "disableOnWords": [],
            "disableOnAttributes": [],
            "disableOnNumbers": False,
        },
        "faceting": {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "alpha"}},
        "pagination": {"maxTotalHits": 1000},
        "embedders": {},
        "searchCutoffMs": None,
        "localizedAttributes": None,
        "facetSearch": True,
        "prefixSearch": "indexingTime",
        "chat": copy.deepcopy(DEFAULT_CHAT),
        "foreignKeys": [],
    }


SETTING_NAMES = list(default_settings())

# Expected JSON type of each setting (None is always accepted and means "reset").
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "displayedAttributes": (list,),
    "searchableAttributes": (list,),
    "filterableAttributes": (list,),
    "sortableAttributes": (list,),
    "rankingRules": (list,),
    "stopWords": (list,),
    "nonSeparatorTokens": (list,),
    "separatorTokens": (list,),
    "dictionary": (list,),
    "synonyms": (dict,),
    "distinctAttribute": (str,),
    "proximityPrecision": (str,),
    "typoTolerance": (dict,),
    "faceting": (dict,),
    "pagination": (dict,),
    "embedders": (dict,),
    "searchCutoffMs": (int,),
    "localizedAttributes": (list,),
    "facetSearch": (bool,),
    "prefixSearch": (str,),
    "chat": (dict,),
    "foreignKeys": (list,),
}

# Per-setting sub-routes: url segment -> (setting name, HTTP method used to update it).
SETTING_ROUTES: dict[str, tuple[str, str]] = {
    "displayed-attributes": ("displayedAttributes", "PUT"),
    "searchable-attributes": ("searchableAttributes", "PUT"),
    "filterable-attributes": ("filterableAttributes", "PUT"),
    "sortable-attributes": ("sortableAttributes", "PUT"),
    "ranking-rules": ("rankingRules", "PUT"),
    "stop-words": ("stopWords", "PUT"),
    "non-separator-tokens": ("nonSeparatorTokens", "PUT"),
    "separator-tokens": ("separatorTokens", "PUT"),
    "dictionary": ("dictionary", "PUT"),
    "synonyms": ("synonyms", "PUT"),
    "distinct-attribute": ("distinctAttribute", "PUT"),
    "proximity-precision": ("proximityPrecision", "PUT"),
    "typo-tolerance": ("typoTolerance", "PATCH"),
    "faceting": ("faceting", "PATCH"),
    "pagination": ("pagination", "PATCH"),
    "embedders": ("embedders", "PATCH"),
    "search-cutoff-ms": ("searchCutoffMs", "PUT"),
    "localized-attributes": ("localizedAttributes", "PUT"),
    "facet-search": ("facetSearch", "PUT"),
    "prefix-search": ("prefixSearch", "PUT"),
}

_MERGED_OBJECTS = {"typoTolerance", "faceting", "pagination"}


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def validate_settings(patch: Any) -> dict[str, Any]:
    """Reject what real Meilisearch rejects at request time (unknown fields, wrong types)."""
    if not isinstance(patch, dict):
        raise MeiliError(400, "bad_request", "Invalid value type: expected an object.")
    for name, value in patch.items():
        if name not in SETTING_TYPES:
            expected = ", ".join(f"`{n}`" for n in SETTING_NAMES)
            raise MeiliError(
                400, "bad_request", f"Unknown field `{name}`: expected one of {expected}"
            )
        types = SETTING_TYPES[name]
        bad_bool = isinstance(value, bool) and bool not in types
        if value is not None and (bad_bool or not isinstance(value, types)):
            raise MeiliError(
                400,
                f"invalid_settings_{_snake(name)}",
                f"Invalid value type at `.{name}`: expected {types[0].__name__}.",
            )
    return patch


def apply_settings(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: ``null`` resets a setting, objects merge one level, embedders merge by name."""
    result = copy.deepcopy(current)
    defaults = default_settings()
    for name, value in patch.items():
        if value is None:
            result[name] = defaults[name]
        elif name in _MERGED_OBJECTS:
            merged = result[name]
            for key, sub in value.items():
                if sub is None:
                    merged[key] = defaults[name].get(key)
                elif isinstance(sub, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **sub}
                else:
                    merged[key] = copy.deepcopy(sub)
        elif name == "embedders":
            for embedder, config in value.items():
                if config is None:
                    result[name].pop(embedder, None)
                else:
                    old = result[name].get(embedder, {})
                    new = {**old, **copy.deepcopy(config)}
                    result[name][embedder] = {k: v for k, v in new.items() if v is not None}
        else:
            result[name] = copy.deepcopy(value)
    return result


def _hide_secret(secret: str) -> str:
    n = len(secret)
    if n < 10:
        return "XXX..."
    if n < 20:
        return secret[:2] + "XXXX..."
    if n < 30:
        return secret[:3] + "XXXXX..."
    return secret[:5] + "XXXXXX..."


def hide_secrets(settings: dict[str, Any]) -> dict[str, Any]:
    """GET /settings hides embedder API keys; dumps reveal them."""
    out = copy.deepcopy(settings)
    for config in out.get("embedders", {}).values():
        if isinstance(config, dict) and isinstance(config.get("apiKey"), str):
            config["apiKey"] = _hide_secret(config["apiKey"])
    return out


# --------------------------------------------------------------------------- documents

_DOC_ID = re.compile(r"^[A-Za-z0-9_-]{1,511}$")


def doc_id(value: Any) -> str | None:
    """The internal (string) id of a primary-key value, or None if it is not a valid id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _DOC_ID.match(value):
        return value
    return None


def infer_primary_key(doc: dict[str, Any]) -> str:
    candidates = [k for k in doc if k.lower().endswith("id")]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise MeiliError(
            400,
            "index_primary_key_no_candidate_found",
            "The primary key inference failed as the engine did not find any field ending "
            "with `id` in its name. Please specify the primary key manually using the "
            "`primaryKey` query parameter.",
        )
    names = ", ".join(candidates)
    raise MeiliError(
        400,
        "index_primary_key_multiple_candidates_found",
        f"The primary key inference failed as the engine found {len(candidates)} fields "
        f"ending with `id` in their names: '{names}'. Please specify the primary key "
        "manually using the `primaryKey` query parameter.",
    )


def _lookup(doc: dict[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def select_fields(
    doc: dict[str, Any], fields: list[str] | None, displayed: list[str], retrieve_vectors: bool
) -> dict[str, Any]:
    """Project a stored document the way GET documents / search do."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "_vectors":
            continue
        if "*" not in displayed and key not in displayed:
            continue
        if fields is not None and "*" not in fields and key not in fields:
            continue
        out[key] = copy.deepcopy(value)
    if retrieve_vectors and "_vectors" in doc:
        out["_vectors"] = copy.deepcopy(doc["_vectors"])
    return out


_FILTER_TERM = re.compile(
    r"""^\s*([A-Za-z0-9_.]+)\s*(=|!=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S+)\s*$"""
)


def parse_filter(expr: Any, filterable: list[str], code: str) -> list[tuple[str, str, str]]:
    """Parse a filter made of ``field = value`` / ``field != value`` terms joined with AND.

    Arrays of strings are accepted as an AND of their elements.
    """
    if expr is None:
        return []
    parts: list[str] = []
    if isinstance(expr, list):
        for item in expr:
            if not isinstance(item, str):
                raise MeiliError(400, code, "Only string filters are supported by the test server.")
            parts.extend(re.split(r"\s+AND\s+", item))
    elif isinstance(expr, str):
        parts = [p for p in re.split(r"\s+AND\s+", expr) if p.strip()]
    else:
        raise MeiliError(400, code, "Invalid syntax for the filter parameter.")
    terms = []
    for part in parts:
        match = _FILTER_TERM.match(part)
        if not match:
            raise MeiliError(400, code, f"Was expecting an operation `=`, `!=` at `{part}`.")
        name, op, raw = match.groups()
        if name not in filterable and "*" not in filterable:
            avail = " ".join(filterable)
            raise MeiliError(
                400,
                code,
                f"Attribute `{name}` is not filterable. Available filterable attributes "
                f"are: `{avail}`.\n1:{len(name) + 1} {part.strip()}",
            )
        if raw[:1] in "\"'" and raw[-1:] == raw[:1] and len(raw) >= 2:
            raw = raw[1:-1]
        terms.append((name, op, raw))
    return terms


def _value_matches(value: Any, wanted: str) -> bool:
    if isinstance(value, list):
        return any(_value_matches(v, wanted) for v in value)
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, int | float):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return value is not None and str(value) == wanted


def matches_filter(doc: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    for name, op, wanted in terms:
        hit = _value_matches(_lookup(doc, name), wanted)
        if hit != (op == "="):
            return False
    return True


def _flatten_text(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten_text(v)]
    if isinstance(value, list):
        return [t for v in value for t in _flatten_text(v)]
    if value is None:
        return []
    return [str(value)]


def matches_query(doc: dict[str, Any], query: str, searchable: list[str]) -> bool:
    """Every query word must occur (case-insensitively) in a searchable attribute."""
    words = query.lower().split()
    if not words:
        return True
    texts = []
    for key, value in doc.items():
        if key == "_vectors":
            continue
        if "*" in searchable or key in searchable:
            texts.extend(_flatten_text(value))
    haystack = " ".join(texts).lower()
    return all(word in haystack for word in words)


# --------------------------------------------------------------------------- model


@dataclass
class Index:
    uid: str
    primary_key: str | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    settings: dict[str, Any] = field(default_factory=default_settings)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "createdAt": fmt_time(self.created_at),
            "updatedAt": fmt_time(self.updated_at),
            "primaryKey": self.primary_key,
        }

    def field_distribution(self) -> dict[str, int]:
        dist: dict[str, int] = {}
        for doc in self.documents.values():
            for key in doc:
                if key != "_vectors":
                    dist[key] = dist.get(key, 0) + 1
        return dict(sorted(dist.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            **self.view(),
            "settings": self.settings,
            "documents": list(self.documents.values()),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Index:
        index = cls(
            uid=data["uid"],
            primary_key=data.get("primaryKey"),
            created_at=parse_time(data["createdAt"]) or now(),
            updated_at=parse_time(data["updatedAt"]) or now(),
            settings=apply_settings(default_settings(), data.get("settings") or {}),
        )
        for doc in data.get("documents", []):
            key = doc_id(doc.get(index.primary_key)) if index.primary_key else None
            index.documents[key or str(len(index.documents))] = doc
        return index


ALL_ACTIONS = [
    "search",
    "documents.add",
    "documents.get",
    "documents.delete",
    "indexes.create",
    "indexes.get",
    "indexes.update",
    "indexes.delete",
    "indexes.swap",
    "tasks.cancel",
    "tasks.delete",
    "tasks.get",
    "settings.get",
    "settings.update",
    "stats.get",
    "metrics.get",
    "dumps.create",
    "snapshots.create",
    "version",
    "keys.create",
    "keys.get",
    "keys.update",
    "keys.delete",
    "experimental.get",
    "experimental.update",
    "network.get",
    "network.update",
]
VALID_ACTIONS = {"*"} | set(ALL_ACTIONS) | {a.split(".")[0] + ".*" for a in ALL_ACTIONS if "." in a}


def derive_key(uid: str, master_key: str) -> str:
    """API key value = hex(HMAC-SHA256(master key, hyphenated lowercase uid))."""
    return hmac.new(master_key.encode(), uid.lower().encode(), hashlib.sha256).hexdigest()


def key_allows(key: dict[str, Any], action: str, index_uid: str | None) -> bool:
    actions = key["actions"]
    family = action.split(".")[0] + ".*"
    if "*" not in actions and action not in actions and family not in actions:
        return False
    if index_uid is None:
        return True
    return index_allowed(key, index_uid)


def index_allowed(key: dict[str, Any], index_uid: str) -> bool:
    for pattern in key["indexes"]:
        if pattern == "*" or pattern == index_uid:
            return True
        if pattern.endswith("*") and index_uid.startswith(pattern[:-1]):
            return True
    return False


def default_features() -> dict[str, bool]:
    return {
        "vectorStore": False,
        "metrics": False,
        "logsRoute": False,
        "editDocumentsByFunction": False,
        "containsFilter": False,
    }


class Store:
    """The whole database of one server (what a snapshot captures)."""

    def __init__(self, features: dict[str, bool] | None = None) -> None:
        self.lock = threading.RLock()
        self.feature_defaults = dict(features) if features is not None else default_features()
        self.instance_uid = str(uuid.uuid4())
        self.indexes: dict[str, Index] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.batches: dict[int, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.features = dict(self.feature_defaults)
        self.network: dict[str, Any] = {"self": None, "remotes": {}}
        self.next_task_uid = 0
        self.next_batch_uid = 0
        self.last_update: datetime | None = None

    def is_empty(self) -> bool:
        return not self.indexes and not self.tasks

    def get_index(self, uid: str) -> Index:
        index = self.indexes.get(uid)
        if index is None:
            raise index_not_found(uid)
        return index

    # ---- keys

    def create_default_keys(self) -> None:
        self.add_key(
            {
                "name": "Default Search API Key",
                "description": "Use it to search from the frontend",
                "actions": ["search"],
                "indexes": ["*"],
                "expiresAt": None,
            }
        )
        self.add_key(
            {
                "name": "Default Admin API Key",
                "description": "Use it for anything that is not a search operation. "
                "Caution! Do not expose it on a public frontend",
                "actions": ["*"],
                "indexes": ["*"],
                "expiresAt": None,
            }
        )

    def add_key(self, body: dict[str, Any]) -> dict[str, Any]:
        uid = str(body.get("uid") or uuid.uuid4()).lower()
        stamp = fmt_time(now())
        key = {
            "name": body.get("name"),
            "description": body.get("description"),
            "uid": uid,
            "actions": list(body["actions"]),
            "indexes": list(body["indexes"]),
            "expiresAt": body.get("expiresAt"),
            "createdAt": body.get("createdAt") or stamp,
            "updatedAt": body.get("updatedAt") or stamp,
        }
        self.keys[uid] = key
        return key

    def find_key(self, token: str, master_key: str) -> dict[str, Any] | None:
        for key in self.keys.values():
            if hmac.compare_digest(derive_key(key["uid"], master_key), token):
                expires = parse_time(key["expiresAt"])
                if expires is not None and expires <= now():
                    return None
                return key
        return None

    # ---- persistence (data dir and snapshots share this format)

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceUid": self.instance_uid,
            "indexes": [index.to_json() for index in self.indexes.values()],
            "tasks": list(self.tasks.values()),
            "batches": list(self.batches.values()),
            "keys": list(self.keys.values()),
            "features": self.features,
            "network": self.network,
            "nextTaskUid": self.next_task_uid,
            "nextBatchUid": self.next_batch_uid,
            "lastUpdate": fmt_time(self.last_update),
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.instance_uid = data["instanceUid"]
        self.indexes = {i["uid"]: Index.from_json(i) for i in data["indexes"]}
        self.tasks = {t["uid"]: t for t in data["tasks"]}
        for task in self.tasks.values():
            if task["status"] == "processing":  # interrupted: it runs again
                task.update(status="enqueued", startedAt=None, batchUid=None)
        self.batches = {b["uid"]: b for b in data["batches"]}
        self.keys = {k["uid"]: k for k in data["keys"]}
        saved = data.get("features", {})
        self.features = {**self.feature_defaults, **{k: v for k, v in saved.items() if k in self.feature_defaults}}
        self.network = data.get("network") or {"self": None, "remotes": {}}
        self.next_task_uid = data["nextTaskUid"]
        self.next_batch_uid = data["nextBatchUid"]
        self.last_update = parse_time(data.get("lastUpdate"))
