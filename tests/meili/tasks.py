"""The task queue: one worker thread processes writes in order, like Meilisearch's scheduler.

Internally every task is a dict holding the public task fields plus private ``_kind`` (the
task's arguments, shaped like the ``type`` of a V6 dump's ``tasks/queue.jsonl``) and, for
document additions still in the queue, ``_documents`` (its update file).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .store import (
    DOCS_LINK,
    Index,
    MeiliError,
    Store,
    apply_settings,
    doc_id,
    fmt_duration,
    fmt_time,
    infer_primary_key,
    matches_filter,
    now,
    parse_filter,
    parse_time,
)

if TYPE_CHECKING:
    from .server import MeiliTestServer

TASK_TYPES = [
    "documentAdditionOrUpdate",
    "documentEdition",
    "documentDeletion",
    "settingsUpdate",
    "indexCreation",
    "indexDeletion",
    "indexUpdate",
    "indexSwap",
    "taskCancelation",
    "taskDeletion",
    "dumpCreation",
    "snapshotCreation",
]
STATUSES = ["enqueued", "processing", "succeeded", "failed", "canceled"]
# Meilisearch batches these before any index work, in this order.
PRIORITY = {"taskCancelation": 0, "taskDeletion": 1, "snapshotCreation": 2, "dumpCreation": 3}


def kind_name(task: dict[str, Any]) -> str:
    kind = task["_kind"]
    return kind if isinstance(kind, str) else next(iter(kind))


def kind_args(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["_kind"]
    return {} if isinstance(kind, str) else kind[kind_name(task)]


def task_view(task: dict[str, Any]) -> dict[str, Any]:
    view = {k: copy.deepcopy(v) for k, v in task.items() if not k.startswith("_")}
    if view.get("details") is None:
        view.pop("details", None)
    return view


def summarized(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "taskUid": task["uid"],
        "indexUid": task["indexUid"],
        "status": task["status"],
        "type": task["type"],
        "enqueuedAt": task["enqueuedAt"],
    }


def _csv(params: dict[str, str], name: str) -> list[str] | None:
    raw = params.get(name)
    if raw is None or raw.strip() in ("", "*"):
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _ints(params: dict[str, str], name: str, code: str) -> list[int] | None:
    values = _csv(params, name)
    if values is None:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        raise MeiliError(
            400, code, f"Invalid value in parameter `{name}`: could not parse `{values}`."
        ) from None


TASK_FILTERS = ("uids", "batchUids", "statuses", "types", "indexUids", "canceledBy")


def filter_tasks(tasks: Iterable[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    """Apply the /tasks query filters (uids, batchUids, statuses, types, indexUids, canceledBy)."""
    uids = _ints(params, "uids", "invalid_task_uids")
    batch_uids = _ints(params, "batchUids", "invalid_task_batch_uids")
    canceled_by = _ints(params, "canceledBy", "invalid_task_canceled_by")
    statuses = _csv(params, "statuses")
    types = _csv(params, "types")
    index_uids = _csv(params, "indexUids")
    for value in statuses or []:
        if value not in STATUSES:
            raise MeiliError(
                400,
                "invalid_task_statuses",
                f"Invalid value in parameter `statuses`: `{value}` is not a valid task status.",
            )
    for value in types or []:
        if value not in TASK_TYPES:
            raise MeiliError(
                400,
                "invalid_task_types",
                f"Invalid value in parameter `types`: `{value}` is not a valid task type.",
            )
    out = []
    for task in tasks:
        if uids is not None and task["uid"] not in uids:
            continue
        if batch_uids is not None and task["batchUid"] not in batch_uids:
            continue
        if canceled_by is not None and task["canceledBy"] not in canceled_by:
            continue
        if statuses is not None and task["status"] not in statuses:
            continue
        if types is not None and task["type"] not in types:
            continue
        if index_uids is not None and task["indexUid"] not in index_uids:
            continue
        out.append(task)
    return out


class TaskQueue:
    """Registers tasks and runs the single worker thread."""

    def __init__(self, server: MeiliTestServer) -> None:
        self.server = server
        self.store: Store = server.store
        self.cond = threading.Condition(self.store.lock)
        self.stopping = False
        self.current: dict[str, Any] | None = None
        self.interrupt = False
        self.failures: dict[str, list[MeiliError]] = {}
        self.stalled: set[str] = set()
        self.thread: threading.Thread | None = None
        self.processed_hooks: list[Callable[[dict[str, Any]], None]] = []

    # ---- lifecycle

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="meili-worker", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=10)

    # ---- hooks

    def fail_next(self, task_type: str, error: MeiliError) -> None:
        with self.cond:
            self.failures.setdefault(task_type, []).append(error)

    def stall(self, types: Iterable[str]) -> None:
        with self.cond:
            self.stalled.update(types)
            self.cond.notify_all()

    def unstall(self) -> None:
        with self.cond:
            self.stalled.clear()
            self.cond.notify_all()

    # ---- registration

    def enqueue(
        self,
        type_: str,
        index_uid: str | None,
        kind: Any,
        details: dict[str, Any] | None,
        documents: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        with self.cond:
            store = self.store
            task: dict[str, Any] = {
                "uid": store.next_task_uid,
                "batchUid": None,
                "indexUid": index_uid,
                "status": "enqueued",
                "type": type_,
                "canceledBy": None,
                "details": details,
                "error": None,
                "duration": None,
                "enqueuedAt": fmt_time(now()),
                "startedAt": None,
                "finishedAt": None,
                "_kind": kind,
            }
            if documents is not None:
                task["_documents"] = documents
            store.next_task_uid += 1
            store.tasks[task["uid"]] = task
            current = self.current
            if type_ == "taskCancelation" and current and current["uid"] in kind[type_]["tasks"]:
                self.interrupt = True
            self.cond.notify_all()
            return task

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.current is not None or self._pick() is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
        return True

    # ---- worker

    def _pick(self) -> dict[str, Any] | None:
        enqueued = [t for t in self.store.tasks.values() if t["status"] == "enqueued"]
        if not enqueued:
            return None
        return min(enqueued, key=lambda t: (PRIORITY.get(t["type"], 9), t["uid"]))

    def _run(self) -> None:
        while True:
            with self.cond:
                task = None
                while not self.stopping and (task := self._pick()) is None:
                    self.cond.wait()
                if self.stopping or task is None:
                    return
                self._begin(task)
            interrupted = self._wait_phase(task)
            with self.cond:
                if interrupted:
                    # Like an aborted batch: the task goes back to the queue.
                    self.store.batches.pop(task["batchUid"], None)
                    task.update(status="enqueued", startedAt=None, batchUid=None)
                else:
                    self._finish(task)
                self.current = None
                self.interrupt = False
                self.cond.notify_all()
            if not interrupted:
                for hook in list(self.processed_hooks):
                    hook(task)

    def _begin(self, task: dict[str, Any]) -> None:
        store = self.store
        started = now()
        task.update(status="processing", startedAt=fmt_time(started), batchUid=store.next_batch_uid)
        store.batches[store.next_batch_uid] = {
            "uid": store.next_batch_uid,
            "progress": None,
            "details": {},
            "stats": {
                "totalNbTasks": 1,
                "status": {"processing": 1},
                "types": {task["type"]: 1},
                "indexUids": {task["indexUid"]: 1} if task["indexUid"] else {},
            },
            "duration": None,
            "startedAt": fmt_time(started),
            "finishedAt": None,
        }
        store.next_batch_uid += 1
        self.current = task

    def _wait_phase(self, task: dict[str, Any]) -> bool:
        """Sleep ``task_delay`` and wait while stalled; True if interrupted (cancel or stop)."""
        deadline = time.monotonic() + self.server.task_delay
        with self.cond:
            while True:
                if self.stopping or self.interrupt:
                    return True
                stalled = "*" in self.stalled or task["type"] in self.stalled
                remaining = deadline - time.monotonic()
                if not stalled and remaining <= 0:
                    return False
                self.cond.wait(None if stalled else remaining)

    def _finish(self, task: dict[str, Any]) -> None:
        store = self.store
        try:
            injected = self.failures.get(task["type"])
            if injected:
                raise injected.pop(0)
            details = PROCESSORS[task["type"]](self, task)
            task.update(status="succeeded", details=details)
            store.last_update = now()
        except MeiliError as err:
            task.update(status="failed", error=err.body(), details=_failed_details(task))
        except Exception as exc:  # a bug or an I/O error: report it like Meilisearch would
            error = MeiliError(500, "internal", f"{type(exc).__name__}: {exc}", "internal")
            task.update(status="failed", error=error.body(), details=_failed_details(task))
        finished = now()
        task["finishedAt"] = fmt_time(finished)
        task["duration"] = fmt_duration(finished - (parse_time(task["startedAt"]) or finished))
        task.pop("_documents", None)
        batch = store.batches.get(task["batchUid"])
        if batch is not None:
            batch.update(
                details=copy.deepcopy(task["details"] or {}),
                duration=task["duration"],
                finishedAt=task["finishedAt"],
            )
            batch["stats"]["status"] = {task["status"]: 1}


def _failed_details(task: dict[str, Any]) -> dict[str, Any] | None:
    details = copy.deepcopy(task["details"])
    if details is None:
        return None
    for key in ("indexedDocuments", "deletedDocuments", "canceledTasks", "deletedTasks"):
        if key in details:
            details[key] = 0
    if "dumpUid" in details:
        details["dumpUid"] = None
    return details


# --------------------------------------------------------------------------- processors


def _process_index_creation(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    uid = task["indexUid"]
    if uid in q.store.indexes:
        raise MeiliError(409, "index_already_exists", f"Index `{uid}` already exists.")
    pk = kind_args(task).get("primary_key")
    q.store.indexes[uid] = Index(uid=uid, primary_key=pk)
    return {"primaryKey": pk}


def _process_index_update(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    index = q.store.get_index(task["indexUid"])
    pk = kind_args(task).get("primary_key")
    if pk is not None and pk != index.primary_key:
        if index.documents:
            raise MeiliError(
                400,
                "index_primary_key_already_exists",
                f"Index `{index.uid}`: Index already has a primary key: `{index.primary_key}`.",
            )
        index.primary_key = pk
    index.updated_at = now()
    return {"primaryKey": pk}


def _process_index_deletion(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    index = q.store.get_index(task["indexUid"])
    del q.store.indexes[index.uid]
    return {"deletedDocuments": len(index.documents)}


def _process_document_addition(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    uid = task["indexUid"]
    args = kind_args(task)
    documents: list[dict[str, Any]] = task.get("_documents") or []
    index = q.store.indexes.get(uid)
    pk = index.primary_key if index else None
    wanted = args.get("primary_key")
    if pk is not None and wanted is not None and wanted != pk:
        raise MeiliError(
            400,
            "index_primary_key_already_exists",
            f"Index `{uid}`: Index already has a primary key: `{pk}`.",
        )
    pk = pk or wanted
    if pk is None and documents:
        pk = infer_primary_key(documents[0])
    staged: dict[str, dict[str, Any]] = {}
    for doc in documents:
        if not isinstance(doc, dict):
            raise MeiliError(400, "malformed_payload", "A document must be a JSON object.")
        if pk not in doc:
            raise MeiliError(
                400,
                "missing_document_id",
                f"Document doesn't have a `{pk}` attribute: `{_compact(doc)}`.",
            )
        key = doc_id(doc[pk])
        if key is None:
            raise MeiliError(
                400,
                "invalid_document_id",
                f"Document identifier `{_compact(doc[pk])}` is invalid. A document identifier "
                "can be of type integer or string, only composed of alphanumeric characters "
                "(a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be more than "
                "511 bytes.",
            )
        if args.get("method") == "UpdateDocuments":
            base = staged.get(key) or (index.documents.get(key) if index else None) or {}
            staged[key] = {**copy.deepcopy(base), **copy.deepcopy(doc)}
        else:
            staged[key] = copy.deepcopy(doc)
    if index is None:
        index = q.store.indexes[uid] = Index(uid=uid)
    if documents:
        index.primary_key = pk
    index.documents.update(staged)
    index.updated_at = now()
    return {"receivedDocuments": len(documents), "indexedDocuments": len(documents)}


def _process_document_deletion(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    index = q.store.get_index(task["indexUid"])
    name, args = kind_name(task), kind_args(task)
    if name == "documentClear":
        deleted = len(index.documents)
        index.documents.clear()
        details: dict[str, Any] = {"deletedDocuments": deleted}
    elif name == "documentDeletionByFilter":
        terms = parse_filter(
            args["filter"], index.settings["filterableAttributes"], "invalid_document_filter"
        )
        doomed = [k for k, d in index.documents.items() if matches_filter(d, terms)]
        for key in doomed:
            del index.documents[key]
        details = task["details"] | {"deletedDocuments": len(doomed)}
    else:
        ids = [str(i) for i in args["documents_ids"]]
        deleted = sum(1 for i in ids if index.documents.pop(i, None) is not None)
        details = {"providedIds": len(ids), "deletedDocuments": deleted}
    index.updated_at = now()
    return details


def _process_settings(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    uid = task["indexUid"]
    args = kind_args(task)
    index = q.store.indexes.get(uid)
    if index is None:
        index = q.store.indexes[uid] = Index(uid=uid)
    # A reset (``is_deletion``) carries ``null`` for every setting it resets.
    index.settings = apply_settings(index.settings, args["settings"])
    index.updated_at = now()
    return task["details"]


def _process_swap(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    swaps = kind_args(task)["swaps"]
    names = [name for swap in swaps for name in swap["indexes"]]
    missing = [n for n in names if n not in q.store.indexes]
    if missing:
        listed = ", ".join(f"`{n}`" for n in missing)
        noun = "Index" if len(missing) == 1 else "Indexes"
        raise MeiliError(404, "index_not_found", f"{noun} {listed} not found.")
    for swap in swaps:
        a, b = (q.store.indexes[n] for n in swap["indexes"])
        q.store.indexes[a.uid], q.store.indexes[b.uid] = b, a
        a.uid, b.uid = b.uid, a.uid
        a.updated_at = b.updated_at = now()
        rename = {a.uid: b.uid, b.uid: a.uid}
        for other in q.store.tasks.values():
            if other is not task and other["indexUid"] in rename:
                other["indexUid"] = rename[other["indexUid"]]
    return {"swaps": copy.deepcopy(swaps)}


def _process_cancelation(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    canceled = 0
    for uid in kind_args(task)["tasks"]:
        target = q.store.tasks.get(uid)
        if target is not None and target["status"] == "enqueued":
            target.update(
                status="canceled",
                canceledBy=task["uid"],
                batchUid=task["batchUid"],
                finishedAt=fmt_time(now()),
            )
            target.pop("_documents", None)
            canceled += 1
    return task["details"] | {"canceledTasks": canceled}


def _process_task_deletion(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    deleted = 0
    for uid in kind_args(task)["tasks"]:
        target = q.store.tasks.get(uid)
        if target is not None and target["status"] in ("succeeded", "failed", "canceled"):
            del q.store.tasks[uid]
            deleted += 1
    return task["details"] | {"deletedTasks": deleted}


def _process_dump(q: TaskQueue, task: dict[str, Any]) -> dict[str, Any]:
    from .archive import write_dump

    started = parse_time(task["startedAt"]) or now()
    dump_uid = started.strftime("%Y%m%d-%H%M%S") + f"{started.microsecond // 1000:03d}"
    write_dump(q.store, q.server.dump_dir, q.server.version, task, dump_uid)
    return {"dumpUid": dump_uid}


def _process_snapshot(q: TaskQueue, task: dict[str, Any]) -> None:
    from .archive import write_snapshot

    write_snapshot(q.store, q.server.snapshot_path, q.server.version, task)
    return None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


PROCESSORS: dict[str, Callable[[TaskQueue, dict[str, Any]], Any]] = {
    "indexCreation": _process_index_creation,
    "indexUpdate": _process_index_update,
    "indexDeletion": _process_index_deletion,
    "documentAdditionOrUpdate": _process_document_addition,
    "documentDeletion": _process_document_deletion,
    "settingsUpdate": _process_settings,
    "indexSwap": _process_swap,
    "taskCancelation": _process_cancelation,
    "taskDeletion": _process_task_deletion,
    "dumpCreation": _process_dump,
    "snapshotCreation": _process_snapshot,
}

ERROR_TYPES = {"internal": "internal", "io_error": "system", "no_space_left_on_device": "system"}


def injected_error(code: str, message: str | None, type_: str | None) -> MeiliError:
    return MeiliError(
        500 if code == "internal" else 400,
        code,
        message or f"Injected failure ({code}) from the test server.",
        type_ or ERROR_TYPES.get(code, "invalid_request"),
    )


__all__ = ["DOCS_LINK", "TASK_FILTERS", "TaskQueue", "filter_tasks", "summarized", "task_view"]
