"""The HTTP API of the Meilisearch test server: routing, auth and one function per route."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .store import (
    SETTING_NAMES,
    SETTING_ROUTES,
    VALID_ACTIONS,
    MeiliError,
    derive_key,
    fmt_time,
    hide_secrets,
    index_allowed,
    key_allows,
    matches_filter,
    matches_query,
    now,
    parse_filter,
    select_fields,
    validate_settings,
)
from .tasks import filter_tasks, summarized, task_view

if TYPE_CHECKING:
    from .server import MeiliTestServer

_INDEX_UID = re.compile(r"^[A-Za-z0-9_-]{1,400}$")
_ACCEPTED = "`application/json`, `application/x-ndjson`, `text/csv`"


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    args: dict[str, str] = field(default_factory=dict)
    key: dict[str, Any] | None = None  # the API key used (None: master key or no auth)

    def json(self, default: Any = ...) -> Any:
        if not self.body.strip():
            if default is not ...:
                return default
            raise MeiliError(400, "missing_payload", "A json payload is missing.")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise MeiliError(
                400, "malformed_payload", f"The json payload provided is malformed. `{exc}`."
            ) from None


Response = tuple[int, Any]
Handler = Callable[[Request], Response]


def _int_param(req: Request, name: str, default: int, code: str) -> int:
    raw = req.params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MeiliError(
            400,
            code,
            f"Invalid value in parameter `{name}`: could not parse `{raw}` as a positive integer",
        ) from None
    if value < 0:
        raise MeiliError(400, code, f"Invalid value in parameter `{name}`: must be positive")
    return value


def _bool_param(req: Request, name: str) -> bool:
    raw = req.params.get(name, "false").lower()
    if raw not in ("true", "false"):
        code = "invalid_document_" + re.sub(r"([A-Z])", r"_\1", name).lower()
        raise MeiliError(400, code, f"Invalid value in parameter `{name}`.")
    return raw == "true"


def _check_index_uid(uid: str) -> None:
    if not _INDEX_UID.match(uid):
        raise MeiliError(
            400,
            "invalid_index_uid",
            f"`{uid}` is not a valid index uid. Index uid can be an integer or a string "
            "containing only alphanumeric characters, hyphens (-) and underscores (_), and "
            "can not be more than 512 bytes.",
        )


def _cast_csv(value: str, kind: str) -> Any:
    if value == "":
        return None
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value else number
    if kind == "boolean":
        return value.strip().lower() == "true"
    return value


def parse_documents(req: Request) -> list[dict[str, Any]]:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype:
        raise MeiliError(
            415,
            "missing_content_type",
            f"A Content-Type header is missing. Accepted values for the Content-Type header "
            f"are: {_ACCEPTED}",
        )
    if ctype not in ("application/json", "application/x-ndjson", "text/csv"):
        raise MeiliError(
            415,
            "invalid_content_type",
            f"The Content-Type `{ctype}` is invalid. Accepted values for the Content-Type "
            f"header are: {_ACCEPTED}",
        )
    text = req.body.decode("utf-8")
    if not text.strip():
        raise MeiliError(400, "missing_payload", f"A {ctype} payload is missing.")
    try:
        if ctype == "application/json":
            parsed = json.loads(text)
            docs = parsed if isinstance(parsed, list) else [parsed]
        elif ctype == "application/x-ndjson":
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            reader = csv.reader(io.StringIO(text))
            header = [(*h.split(":", 1), "string")[:2] for h in next(reader)]
            docs = [
                {name: _cast_csv(v, kind) for (name, kind), v in zip(header, row, strict=False)}
                for row in reader
            ]
    except ValueError as exc:
        kind = {"application/json": "json", "application/x-ndjson": "ndjson"}.get(ctype, "csv")
        raise MeiliError(
            400, "malformed_payload", f"The `{kind}` payload provided is malformed. `{exc}`."
        ) from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise MeiliError(
                400,
                "malformed_payload",
                "The `json` payload provided is malformed. `Couldn't serialize document "
                f"value: invalid type: {type(doc).__name__}, expected a map`.",
            )
    return docs


class Api:
    """Routes requests to handlers after checking the Authorization header."""

    def __init__(self, server: MeiliTestServer) -> None:
        self.server = server
        self.behaviour = server.behaviour
        self.store = server.store
        self.queue = server.queue
        # (method, pattern, handler, action); action None = public route.
        self.routes: list[tuple[str, re.Pattern[str], Handler, str | None]] = []
        idx = r"/indexes/(?P<uid>[^/]+)"
        for method, pattern, handler, action in [
            ("GET", r"/health", self.health, None),
            ("GET", r"/version", self.version, "version"),
            ("GET", r"/stats", self.global_stats, "stats.get"),
            ("GET", r"/indexes", self.list_indexes, "indexes.get"),
            ("POST", r"/indexes", self.create_index, "indexes.create"),
            ("GET", idx, self.get_index, "indexes.get"),
            ("PATCH", idx, self.update_index, "indexes.update"),
            ("DELETE", idx, self.delete_index, "indexes.delete"),
            ("GET", idx + r"/stats", self.index_stats, "stats.get"),
            ("GET", idx + r"/settings", self.get_settings, "settings.get"),
            ("PATCH", idx + r"/settings", self.update_settings, "settings.update"),
            ("DELETE", idx + r"/settings", self.reset_settings, "settings.update"),
            ("GET", idx + r"/settings/(?P<name>[a-z-]+)", self.get_setting, "settings.get"),
            ("PUT", idx + r"/settings/(?P<name>[a-z-]+)", self.set_setting, "settings.update"),
            ("PATCH", idx + r"/settings/(?P<name>[a-z-]+)", self.set_setting, "settings.update"),
            ("DELETE", idx + r"/settings/(?P<name>[a-z-]+)", self.reset_setting, "settings.update"),
            ("GET", idx + r"/documents", self.get_documents, "documents.get"),
            ("POST", idx + r"/documents", self.add_documents, "documents.add"),
            ("PUT", idx + r"/documents", self.update_documents, "documents.add"),
            ("DELETE", idx + r"/documents", self.clear_documents, "documents.delete"),
            ("POST", idx + r"/documents/fetch", self.fetch_documents, "documents.get"),
            ("POST", idx + r"/documents/delete-batch", self.delete_batch, "documents.delete"),
            ("POST", idx + r"/documents/delete", self.delete_by_filter, "documents.delete"),
            ("GET", idx + r"/documents/(?P<id>[^/]+)", self.get_document, "documents.get"),
            ("DELETE", idx + r"/documents/(?P<id>[^/]+)", self.delete_document, "documents.delete"),
            ("POST", idx + r"/search", self.search, "search"),
            ("GET", idx + r"/search", self.search, "search"),
            ("GET", r"/tasks", self.list_tasks, "tasks.get"),
            ("DELETE", r"/tasks", self.delete_tasks, "tasks.delete"),
            ("POST", r"/tasks/cancel", self.cancel_tasks, "tasks.cancel"),
            ("GET", r"/tasks/(?P<task>[^/]+)", self.get_task, "tasks.get"),
            ("GET", r"/batches", self.list_batches, "tasks.get"),
            ("GET", r"/batches/(?P<batch>[^/]+)", self.get_batch, "tasks.get"),
            ("POST", r"/swap-indexes", self.swap_indexes, "indexes.swap"),
            ("POST", r"/dumps", self.create_dump, "dumps.create"),
            ("GET", r"/experimental-features", self.get_features, "experimental.get"),
            ("PATCH", r"/experimental-features", self.set_features, "experimental.update"),
            ("GET", r"/keys", self.list_keys, "keys.get"),
            ("POST", r"/keys", self.create_key, "keys.create"),
            ("GET", r"/keys/(?P<key>[^/]+)", self.get_key, "keys.get"),
            ("PATCH", r"/keys/(?P<key>[^/]+)", self.update_key, "keys.update"),
            ("DELETE", r"/keys/(?P<key>[^/]+)", self.delete_key, "keys.delete"),
        ]:
            self.routes.append((method, re.compile(pattern + r"/?"), handler, action))
        gone = set()
        if not self.behaviour.has_fetch_route:
            gone.add(self.fetch_documents)
        if not self.behaviour.has_features_route:
            gone |= {self.get_features, self.set_features}
        if not self.behaviour.has_batches:
            gone |= {self.list_batches, self.get_batch}
        self.routes = [r for r in self.routes if r[2] not in gone]
        if self.behaviour.has_snapshot_route:
            self.routes.append((
                "POST", re.compile(r"/snapshots/?"), self.create_snapshot, "snapshots.create"
            ))

    # ---- dispatch and auth

    def handle(self, req: Request) -> Response:
        try:
            allowed = False
            for method, pattern, handler, action in self.routes:
                match = pattern.fullmatch(req.path)
                if not match:
                    continue
                allowed = True
                if method != req.method:
                    continue
                req.args = match.groupdict()
                if action is not None:
                    self.authorize(req, action, req.args.get("uid"))
                with self.store.lock:
                    status, payload = handler(req)
                    self._custom_metadata(req, status, payload)
                    return status, payload
            if allowed:
                return 405, None
            raise MeiliError(404, "not_found", "Not found.")  # real Meilisearch: empty 404
        except MeiliError as err:
            return err.status, err.body()

    def _custom_metadata(self, req: Request, status: int, payload: Any) -> None:
        # crates/meilisearch/src/routes/indexes/documents.rs CustomMetadataQuery (v1.26.0+):
        # `?customMetadata=` is kept on the task and shown as `customMetadata` when set
        # (crates/meilisearch-types/src/task_view.rs, skip_serializing_if none).
        value = req.params.get("customMetadata")
        if value is None or status != 202 or not self.behaviour.v >= (1, 26, 0):
            return
        task = self.store.tasks.get(payload.get("taskUid")) if isinstance(payload, dict) else None
        if task is not None:
            task["customMetadata"] = value

    def authorize(self, req: Request, action: str, index_uid: str | None) -> None:
        master = self.server.master_key
        if action.startswith("keys.") and master is None:
            raise MeiliError(
                401,
                "missing_master_key",
                "Meilisearch is running without a master key. To access this API endpoint, "
                "you must have set a master key at launch.",
                "auth",
            )
        if master is None:
            return
        header = req.headers.get("authorization")
        if not header:
            raise MeiliError(
                401,
                "missing_authorization_header",
                "The Authorization header is missing. It must use the bearer authorization method.",
                "auth",
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token == master:
            return
        with self.store.lock:
            key = self.store.find_key(token, master) if scheme.lower() == "bearer" else None
        if key is None or not key_allows(key, action, index_uid):
            raise MeiliError(403, "invalid_api_key", "The provided API key is invalid.", "auth")
        req.key = key

    def _visible(self, req: Request, index_uid: str | None) -> bool:
        return req.key is None or index_uid is None or index_allowed(req.key, index_uid)

    # ---- instance

    def health(self, req: Request) -> Response:
        return 200, {"status": "available"}

    def version(self, req: Request) -> Response:
        return 200, {
            "commitSha": "0000000000000000000000000000000000000000",
            "commitDate": "2024-12-23T00:00:00Z",
            "pkgVersion": self.server.version,
        }

    def global_stats(self, req: Request) -> Response:
        indexes = {
            uid: self._stats(uid) for uid in sorted(self.store.indexes) if self._visible(req, uid)
        }
        size = len(json.dumps(self.store.to_json()))
        return 200, {
            "databaseSize": size,
            "usedDatabaseSize": size,
            "lastUpdate": fmt_time(self.store.last_update),
            "indexes": indexes,
        }

    def _stats(self, uid: str) -> dict[str, Any]:
        index = self.store.get_index(uid)
        current = self.queue.current
        busy = current is not None and current["indexUid"] == uid
        return {
            "numberOfDocuments": len(index.documents),
            "isIndexing": busy,
            "fieldDistribution": index.field_distribution(),
        }

    # ---- indexes

    def _page(self, req: Request, items: list[Any], code: str) -> dict[str, Any]:
        offset = _int_param(req, "offset", 0, f"invalid_{code}_offset")
        limit = _int_param(req, "limit", 20, f"invalid_{code}_limit")
        return {
            "results": items[offset : offset + limit],
            "offset": offset,
            "limit": limit,
            "total": len(items),
        }

    def list_indexes(self, req: Request) -> Response:
        views = [
            i.view() for uid, i in sorted(self.store.indexes.items()) if self._visible(req, uid)
        ]
        return 200, self._page(req, views, "index")

    def create_index(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or "uid" not in body:
            raise MeiliError(400, "missing_index_uid", "Missing field `uid`")
        uid = body["uid"]
        if not isinstance(uid, str):
            raise MeiliError(400, "invalid_index_uid", "Invalid value type at `.uid`.")
        _check_index_uid(uid)
        if not self._visible(req, uid):
            raise MeiliError(403, "invalid_api_key", "The provided API key is invalid.", "auth")
        pk = body.get("primaryKey")
        task = self.queue.enqueue(
            "indexCreation", uid, {"indexCreation": {"primary_key": pk}}, {"primaryKey": pk}
        )
        return 202, summarized(task)

    def get_index(self, req: Request) -> Response:
        return 200, self.store.get_index(req.args["uid"]).view()

    def update_index(self, req: Request) -> Response:
        body = req.json()
        pk = body.get("primaryKey") if isinstance(body, dict) else None
        uid = req.args["uid"]
        task = self.queue.enqueue(
            "indexUpdate", uid, {"indexUpdate": {"primary_key": pk}}, {"primaryKey": pk}
        )
        return 202, summarized(task)

    def delete_index(self, req: Request) -> Response:
        task = self.queue.enqueue(
            "indexDeletion", req.args["uid"], "indexDeletion", {"deletedDocuments": None}
        )
        return 202, summarized(task)

    def index_stats(self, req: Request) -> Response:
        return 200, self._stats(req.args["uid"])

    # ---- settings

    def _settings_task(self, uid: str, patch: dict[str, Any], deletion: bool) -> Response:
        _check_index_uid(uid)
        kind = {
            "settings": {"settings": patch, "is_deletion": deletion, "allow_index_creation": True}
        }
        task = self.queue.enqueue("settingsUpdate", uid, kind, copy.deepcopy(patch))
        return 202, summarized(task)

    def get_settings(self, req: Request) -> Response:
        settings = hide_secrets(self.store.get_index(req.args["uid"]).settings)
        return 200, self.behaviour.get_settings(settings, self.store.features)

    def update_settings(self, req: Request) -> Response:
        patch = req.json()
        self.behaviour.check_settings(patch, self.store.features)
        return self._settings_task(req.args["uid"], validate_settings(patch), False)

    def reset_settings(self, req: Request) -> Response:
        return self._settings_task(req.args["uid"], dict.fromkeys(SETTING_NAMES), True)

    def _setting_name(self, req: Request) -> tuple[str, str]:
        route = SETTING_ROUTES.get(req.args["name"])
        if route is None:
            raise MeiliError(404, "not_found", "Not found.")
        return route

    def get_setting(self, req: Request) -> Response:
        name, _ = self._setting_name(req)
        return 200, hide_secrets(self.store.get_index(req.args["uid"]).settings)[name]

    def set_setting(self, req: Request) -> Response:
        name, method = self._setting_name(req)
        if req.method != method:
            return 405, None
        patch = {name: req.json()}
        self.behaviour.check_settings(patch, self.store.features)
        return self._settings_task(req.args["uid"], validate_settings(patch), False)

    def reset_setting(self, req: Request) -> Response:
        name, _ = self._setting_name(req)
        return self._settings_task(req.args["uid"], {name: None}, True)

    # ---- documents

    def _list_documents(
        self,
        uid: str,
        offset: int,
        limit: int,
        fields: list[str] | None,
        filter_expr: Any,
        vectors: bool,
    ) -> dict[str, Any]:
        index = self.store.get_index(uid)
        vectors = self.behaviour.vectors_shown(vectors, self.store.features)
        terms = parse_filter(
            filter_expr, index.settings["filterableAttributes"], "invalid_document_filter"
        )
        docs = [d for d in index.documents.values() if matches_filter(d, terms)]
        # Since v0.28 displayedAttributes affects search only, not the documents routes.
        page = [select_fields(d, fields, ["*"], vectors) for d in docs[offset : offset + limit]]
        return {"results": page, "offset": offset, "limit": limit, "total": len(docs)}

    def get_documents(self, req: Request) -> Response:
        fields = req.params.get("fields")
        asked = _bool_param(req, "retrieveVectors") if "retrieveVectors" in req.params else False
        self.behaviour.check_retrieve_vectors(
            asked, "retrieveVectors" in req.params, self.store.features, get=True
        )
        return 200, self._list_documents(
            req.args["uid"],
            _int_param(req, "offset", 0, "invalid_document_offset"),
            _int_param(req, "limit", 20, "invalid_document_limit"),
            [f.strip() for f in fields.split(",")] if fields else None,
            req.params.get("filter"),
            asked,
        )

    def fetch_documents(self, req: Request) -> Response:
        body = req.json(default={})
        if not isinstance(body, dict):
            raise MeiliError(400, "bad_request", "Invalid value type: expected an object.")
        offset, limit = body.get("offset", 0), body.get("limit", 20)
        for name, value in (("offset", offset), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MeiliError(
                    400, f"invalid_document_{name}", f"Invalid value type at `.{name}`."
                )
        self.behaviour.check_retrieve_vectors(
            bool(body.get("retrieveVectors")), "retrieveVectors" in body, self.store.features,
            get=False,
        )
        return 200, self._list_documents(
            req.args["uid"],
            offset,
            limit,
            body.get("fields"),
            body.get("filter"),
            bool(body.get("retrieveVectors", False)),
        )

    def _add(self, req: Request, method: str) -> Response:
        uid = req.args["uid"]
        _check_index_uid(uid)
        docs = parse_documents(req)
        pk = req.params.get("primaryKey")
        kind = {
            "documentImport": {
                "primary_key": pk,
                "method": method,
                "documents_count": len(docs),
                "allow_index_creation": True,
            }
        }
        details = {"receivedDocuments": len(docs), "indexedDocuments": None}
        task = self.queue.enqueue("documentAdditionOrUpdate", uid, kind, details, docs)
        return 202, summarized(task)

    def add_documents(self, req: Request) -> Response:
        return self._add(req, "ReplaceDocuments")

    def update_documents(self, req: Request) -> Response:
        return self._add(req, "UpdateDocuments")

    def clear_documents(self, req: Request) -> Response:
        task = self.queue.enqueue(
            "documentDeletion", req.args["uid"], "documentClear", {"deletedDocuments": None}
        )
        return 202, summarized(task)

    def _delete_ids(self, uid: str, ids: list[Any]) -> Response:
        kind = {"documentDeletion": {"documents_ids": [str(i) for i in ids]}}
        details = {"providedIds": len(ids), "deletedDocuments": None}
        return 202, summarized(self.queue.enqueue("documentDeletion", uid, kind, details))

    def delete_batch(self, req: Request) -> Response:
        ids = req.json()
        if not isinstance(ids, list):
            raise MeiliError(400, "bad_request", "Invalid value type: expected an array.")
        return self._delete_ids(req.args["uid"], ids)

    def delete_document(self, req: Request) -> Response:
        return self._delete_ids(req.args["uid"], [req.args["id"]])

    def delete_by_filter(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or body.get("filter") in (None, "", []):
            raise MeiliError(400, "missing_document_filter", "Missing field `filter`")
        index = self.store.indexes.get(req.args["uid"])
        if index is not None:  # syntax errors are reported at request time
            parse_filter(
                body["filter"], index.settings["filterableAttributes"], "invalid_document_filter"
            )
        kind = {"documentDeletionByFilter": {"filter": body["filter"]}}
        details = {"originalFilter": json.dumps(body["filter"]), "deletedDocuments": None}
        task = self.queue.enqueue("documentDeletion", req.args["uid"], kind, details)
        return 202, summarized(task)

    def get_document(self, req: Request) -> Response:
        index = self.store.get_index(req.args["uid"])
        doc = index.documents.get(req.args["id"])
        if doc is None:
            raise MeiliError(404, "document_not_found", f"Document `{req.args['id']}` not found.")
        fields = req.params.get("fields")
        return 200, select_fields(
            doc,
            [f.strip() for f in fields.split(",")] if fields else None,
            ["*"],  # displayedAttributes affects search only (since v0.28)
            _bool_param(req, "retrieveVectors"),
        )

    def search(self, req: Request) -> Response:
        if req.method == "GET":
            body: dict[str, Any] = dict(req.params)
            for name in ("offset", "limit"):
                if name in body:
                    body[name] = _int_param(req, name, 0, f"invalid_search_{name}")
            if "attributesToRetrieve" in body:
                body["attributesToRetrieve"] = body["attributesToRetrieve"].split(",")
            body["retrieveVectors"] = body.get("retrieveVectors") == "true"
        else:
            body = req.json(default={})
        index = self.store.get_index(req.args["uid"])
        query = body.get("q") or ""
        offset, limit = body.get("offset", 0), body.get("limit", 20)
        terms = parse_filter(
            body.get("filter"), index.settings["filterableAttributes"], "invalid_search_filter"
        )
        searchable = index.settings["searchableAttributes"]
        hits = [
            d
            for d in index.documents.values()
            if matches_filter(d, terms) and matches_query(d, query, searchable)
        ]
        max_hits = index.settings["pagination"]["maxTotalHits"]
        hits = hits[:max_hits]
        displayed = index.settings["displayedAttributes"]
        fields = body.get("attributesToRetrieve")
        vectors = bool(body.get("retrieveVectors", False))
        return 200, {
            "hits": [select_fields(d, fields, displayed, vectors) for d in hits[offset:][:limit]],
            "query": query,
            "processingTimeMs": 0,
            "limit": limit,
            "offset": offset,
            "estimatedTotalHits": len(hits),
        }

    # ---- tasks and batches

    def _visible_tasks(self, req: Request) -> list[dict[str, Any]]:
        tasks = sorted(self.store.tasks.values(), key=lambda t: -t["uid"])
        return [t for t in tasks if self._visible(req, t["indexUid"])]

    def list_tasks(self, req: Request) -> Response:
        tasks = filter_tasks(self._visible_tasks(req), req.params)
        limit = _int_param(req, "limit", 20, "invalid_task_limit")
        total = len(tasks)
        if "from" in req.params:
            start = _int_param(req, "from", 0, "invalid_task_from")
            tasks = [t for t in tasks if t["uid"] <= start]
        page = tasks[:limit]
        body = {
            "results": [self._task_view(t) for t in page],
            "total": total,
            "limit": limit,
            "from": page[0]["uid"] if page else None,
            "next": tasks[limit]["uid"] if len(tasks) > limit else None,
        }
        if not self.behaviour.tasks_have_total:
            del body["total"]  # routes/tasks.rs AllTasks before v1.3.0
        return 200, body

    def _task_view(self, task: dict[str, Any]) -> dict[str, Any]:
        view = task_view(task)
        if not self.behaviour.has_batches:
            view.pop("batchUid", None)  # task_view.rs: no batchUid before v1.13.0
        return view

    def get_task(self, req: Request) -> Response:
        raw = req.args["task"]
        if not raw.isdigit():
            raise MeiliError(
                400, "invalid_task_uids", f"Invalid value in parameter `taskUid`: `{raw}`."
            )
        task = self.store.tasks.get(int(raw))
        if task is None or not self._visible(req, task["indexUid"]):
            raise MeiliError(404, "task_not_found", f"Task `{raw}` not found.")
        return 200, self._task_view(task)

    def _task_query(self, req: Request, route: str) -> tuple[str, list[dict[str, Any]]]:
        known = ("uids", "batchUids", "statuses", "types", "indexUids", "canceledBy")
        if not any(name in req.params for name in known):
            raise MeiliError(
                400,
                "missing_task_filters",
                f"Query parameters to filter the tasks to {route} are missing. Available "
                "query parameters are: `uids`, `indexUids`, `statuses`, `types`, "
                "`canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, "
                "`afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
            )
        query = "?" + "&".join(f"{k}={v}" for k, v in req.params.items())
        return query, filter_tasks(self._visible_tasks(req), req.params)

    def cancel_tasks(self, req: Request) -> Response:
        query, tasks = self._task_query(req, "cancel")
        uids = sorted(t["uid"] for t in tasks if t["status"] in ("enqueued", "processing"))
        kind = {"taskCancelation": {"query": query, "tasks": uids}}
        details = {"matchedTasks": len(uids), "canceledTasks": None, "originalFilter": query}
        return 202, summarized(self.queue.enqueue("taskCancelation", None, kind, details))

    def delete_tasks(self, req: Request) -> Response:
        query, tasks = self._task_query(req, "delete")
        uids = sorted(t["uid"] for t in tasks if t["status"] not in ("enqueued", "processing"))
        kind = {"tasksDeletion": {"query": query, "tasks": uids}}
        details = {"matchedTasks": len(uids), "deletedTasks": None, "originalFilter": query}
        return 202, summarized(self.queue.enqueue("taskDeletion", None, kind, details))

    def list_batches(self, req: Request) -> Response:
        batches = sorted(self.store.batches.values(), key=lambda b: -b["uid"])
        limit = _int_param(req, "limit", 20, "invalid_batch_limit")
        total = len(batches)
        if "from" in req.params:
            start = _int_param(req, "from", 0, "invalid_batch_from")
            batches = [b for b in batches if b["uid"] <= start]
        page = batches[:limit]
        return 200, {
            "results": copy.deepcopy(page),
            "total": total,
            "limit": limit,
            "from": page[0]["uid"] if page else None,
            "next": batches[limit]["uid"] if len(batches) > limit else None,
        }

    def get_batch(self, req: Request) -> Response:
        raw = req.args["batch"]
        batch = self.store.batches.get(int(raw)) if raw.isdigit() else None
        if batch is None:
            raise MeiliError(404, "batch_not_found", f"Batch `{raw}` not found.")
        return 200, copy.deepcopy(batch)

    # ---- swap, dumps, snapshots, features

    def swap_indexes(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, list):
            raise MeiliError(400, "bad_request", "Invalid value type: expected an array.")
        seen: set[str] = set()
        swaps = []
        for i, swap in enumerate(body):
            names = swap.get("indexes") if isinstance(swap, dict) else None
            if not isinstance(names, list) or len(names) != 2:
                raise MeiliError(
                    400,
                    "invalid_swap_indexes",
                    f"Invalid value at `[{i}].indexes`: two indexes must be given.",
                )
            for name in names:
                _check_index_uid(name)
                if name in seen:
                    raise MeiliError(
                        400,
                        "invalid_swap_duplicate_index_found",
                        "Indexes must be declared only once during a swap. "
                        f"`{name}` was specified several times.",
                    )
                if not self._visible(req, name):
                    raise MeiliError(
                        403, "invalid_api_key", "The provided API key is invalid.", "auth"
                    )
                seen.add(name)
            swaps.append({"indexes": list(names)})
        kind = {"indexSwap": {"swaps": swaps}}
        task = self.queue.enqueue("indexSwap", None, kind, {"swaps": copy.deepcopy(swaps)})
        return 202, summarized(task)

    def create_dump(self, req: Request) -> Response:
        kind = {"dumpCreation": {"keys": [], "instance_uid": self.store.instance_uid}}
        task = self.queue.enqueue("dumpCreation", None, kind, {"dumpUid": None})
        return 202, summarized(task)

    def create_snapshot(self, req: Request) -> Response:
        task = self.queue.enqueue("snapshotCreation", None, "snapshotCreation", None)
        return 202, summarized(task)

    def get_features(self, req: Request) -> Response:
        return 200, dict(self.store.features)

    def set_features(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise MeiliError(400, "bad_request", "Invalid value type: expected an object.")
        for name, value in body.items():
            if name not in self.store.feature_defaults:
                known = ", ".join(f"`{n}`" for n in self.store.feature_defaults)
                raise MeiliError(
                    400, "bad_request", f"Unknown field `{name}`: expected one of {known}"
                )
            if value is not None and not isinstance(value, bool):
                raise MeiliError(400, "bad_request", f"Invalid value type at `.{name}`.")
            if value is not None:
                self.store.features[name] = value
        return 200, dict(self.store.features)

    # ---- keys

    def _key_view(self, key: dict[str, Any]) -> dict[str, Any]:
        master = self.server.master_key or ""
        return {
            "name": key["name"],
            "description": key["description"],
            "key": derive_key(key["uid"], master),
            "uid": key["uid"],
            "actions": list(key["actions"]),
            "indexes": list(key["indexes"]),
            "expiresAt": key["expiresAt"],
            "createdAt": key["createdAt"],
            "updatedAt": key["updatedAt"],
        }

    def _find_key(self, ref: str) -> dict[str, Any]:
        master = self.server.master_key or ""
        for key in self.store.keys.values():
            if ref.lower() == key["uid"] or ref == derive_key(key["uid"], master):
                return key
        raise MeiliError(404, "api_key_not_found", f"API key `{ref}` not found.")

    def list_keys(self, req: Request) -> Response:
        keys = sorted(self.store.keys.values(), key=lambda k: k["createdAt"], reverse=True)
        return 200, self._page(req, [self._key_view(k) for k in keys], "api_key")

    def create_key(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise MeiliError(400, "bad_request", "Invalid value type: expected an object.")
        for name, code in (
            ("actions", "missing_api_key_actions"),
            ("indexes", "missing_api_key_indexes"),
            ("expiresAt", "missing_api_key_expires_at"),
        ):
            if name not in body:
                raise MeiliError(400, code, f"Missing field `{name}`")
        actions = body["actions"]
        if not isinstance(actions, list) or any(a not in VALID_ACTIONS for a in actions):
            raise MeiliError(
                400, "invalid_api_key_actions", f"Unknown value in `.actions`: {actions}."
            )
        indexes = body["indexes"]
        if not isinstance(indexes, list) or not all(isinstance(i, str) for i in indexes):
            raise MeiliError(400, "invalid_api_key_indexes", "Invalid value at `.indexes`.")
        uid = body.get("uid")
        if uid is not None:
            if not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", str(uid)):
                raise MeiliError(400, "invalid_api_key_uid", f"Invalid value at `.uid`: `{uid}`.")
            if str(uid).lower() in self.store.keys:
                raise MeiliError(
                    409,
                    "api_key_already_exists",
                    f"`uid` field value `{uid}` is already an existing API key.",
                )
        key = self.store.add_key({**body, "createdAt": None, "updatedAt": None})
        return 201, self._key_view(key)

    def get_key(self, req: Request) -> Response:
        return 200, self._key_view(self._find_key(req.args["key"]))

    def update_key(self, req: Request) -> Response:
        key = self._find_key(req.args["key"])
        body = req.json()
        for name, value in body.items():
            if name not in ("name", "description"):
                code = "immutable_api_key_" + re.sub(r"([A-Z])", r"_\1", name).lower()
                raise MeiliError(
                    400, code, f"Immutable field `{name}`: expected one of `description`, `name`"
                )
            key[name] = value
        key["updatedAt"] = fmt_time(now())
        return 200, self._key_view(key)

    def delete_key(self, req: Request) -> Response:
        key = self._find_key(req.args["key"])
        del self.store.keys[key["uid"]]
        return 204, None
