"""Dumps (the real V6 layout), snapshots and the data directory of the test server."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .store import Index, Store, fmt_time, now
from .tasks import kind_name
from .versions import Behaviour


class MeiliStartupError(RuntimeError):
    """The server refused to start (like ``meilisearch`` exiting with an error)."""


def _jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in rows)


def _write_tar_gz(path: Path, members: list[tuple[str, bytes | None]]) -> None:
    """Write a gzip tar atomically: a temp file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            stamp = now().timestamp()
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.mtime = int(stamp)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_tar_gz(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(path, mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            name = member.name
            while name.startswith("./"):
                name = name[2:]
            extracted = tar.extractfile(member)
            if extracted is not None:
                files[name] = extracted.read()
    return files


# --------------------------------------------------------------------------- dump tasks

_DETAIL_VARIANTS = {
    "documentAdditionOrUpdate": "DocumentAdditionOrUpdate",
    "settingsUpdate": "SettingsUpdate",
    "indexCreation": "IndexInfo",
    "indexUpdate": "IndexInfo",
    "indexDeletion": "ClearAll",
    "indexSwap": "IndexSwap",
    "taskCancelation": "TaskCancelation",
    "taskDeletion": "TaskDeletion",
    "dumpCreation": "Dump",
}
_DELETION_VARIANTS = {
    "documentClear": "ClearAll",
    "documentDeletionByFilter": "DocumentDeletionByFilter",
    "documentDeletion": "DocumentDeletion",
}
_KIND_TYPES = {
    "documentImport": "documentAdditionOrUpdate",
    "documentDeletion": "documentDeletion",
    "documentClear": "documentDeletion",
    "documentDeletionByFilter": "documentDeletion",
    "documentEdition": "documentEdition",
    "settings": "settingsUpdate",
    "indexDeletion": "indexDeletion",
    "indexCreation": "indexCreation",
    "indexUpdate": "indexUpdate",
    "indexSwap": "indexSwap",
    "taskCancelation": "taskCancelation",
    "tasksDeletion": "taskDeletion",
    "dumpCreation": "dumpCreation",
    "snapshotCreation": "snapshotCreation",
}


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _details_to_dump(task: dict[str, Any]) -> dict[str, Any] | None:
    details = task["details"]
    if details is None:
        return None
    if task["type"] == "settingsUpdate":
        return {"SettingsUpdate": {"settings": copy.deepcopy(details)}}
    if task["type"] == "documentDeletion":
        variant = _DELETION_VARIANTS[kind_name(task)]
    else:
        variant = _DETAIL_VARIANTS.get(task["type"], "Unknown")
    return {variant: {_snake(k): copy.deepcopy(v) for k, v in details.items()}}


def _details_from_dump(details: dict[str, Any] | None) -> dict[str, Any] | None:
    if not details:
        return None
    variant, fields = next(iter(details.items()))
    if variant == "SettingsUpdate":
        return fields["settings"]
    return {_camel(k): v for k, v in fields.items()}


def task_to_dump(task: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uid": task["uid"],
        "batchUid": task["batchUid"],
        "indexUid": task["indexUid"],
        "status": task["status"],
        "type": copy.deepcopy(task["_kind"]),
    }
    optional = {
        "canceledBy": task["canceledBy"],
        "details": _details_to_dump(task),
        "error": task["error"],
    }
    row.update({k: v for k, v in optional.items() if v is not None})
    row["enqueuedAt"] = task["enqueuedAt"]
    for name in ("startedAt", "finishedAt"):
        if task[name] is not None:
            row[name] = task[name]
    return row


def task_from_dump(row: dict[str, Any]) -> dict[str, Any]:
    kind = row["type"]
    name = kind if isinstance(kind, str) else next(iter(kind))
    return {
        "uid": row["uid"],
        "batchUid": row.get("batchUid"),
        "indexUid": row.get("indexUid"),
        "status": row["status"],
        "type": _KIND_TYPES.get(name, name),
        "canceledBy": row.get("canceledBy"),
        "details": _details_from_dump(row.get("details")),
        "error": row.get("error"),
        "duration": None,
        "enqueuedAt": row["enqueuedAt"],
        "startedAt": row.get("startedAt"),
        "finishedAt": row.get("finishedAt"),
        "_kind": kind,
    }


# --------------------------------------------------------------------------- dumps


def write_dump(
    store: Store, dump_dir: Path, version: str, current: dict[str, Any], dump_uid: str
) -> Path:
    """Write ``<dump_dir>/<dump_uid>.dump`` with the layout of crates/dump/src/writer.rs.

    Index settings are written as ``version`` writes them (``Behaviour.dump_settings``)."""
    behaviour = Behaviour(version)
    keys = [copy.deepcopy(k) for k in store.keys.values()]
    members: list[tuple[str, bytes | None]] = [
        ("instance_uid.uuid", store.instance_uid.encode()),
        (
            "metadata.json",
            json.dumps(
                {"dumpVersion": "V6", "dbVersion": version, "dumpDate": fmt_time(now())}
            ).encode(),
        ),
        ("indexes", None),
    ]
    for index in store.indexes.values():
        base = f"indexes/{index.uid}"
        meta = {
            "uid": index.uid,
            "primaryKey": index.primary_key,
            "createdAt": fmt_time(index.created_at),
            "updatedAt": fmt_time(index.updated_at),
        }
        members += [
            (base, None),
            (f"{base}/metadata.json", json.dumps(meta).encode()),
            (f"{base}/documents.jsonl", _jsonl(list(index.documents.values()))),
            (f"{base}/settings.json", json.dumps(behaviour.dump_settings(index.settings)).encode()),
        ]
    members.append(("keys.jsonl", _jsonl(keys)))

    rows, update_files = [], []
    finished = fmt_time(now())
    for task in sorted(store.tasks.values(), key=lambda t: t["uid"]):
        row = task_to_dump(task)
        if task is current:
            # Like Meilisearch: the dump records its own task as already succeeded.
            row.update(status="succeeded", details={"Dump": {"dump_uid": dump_uid}})
            row["type"] = {"dumpCreation": {"keys": keys, "instance_uid": store.instance_uid}}
            row["finishedAt"] = finished
        rows.append(row)
        if task["status"] == "enqueued" and task.get("_documents") is not None:
            update_files.append((f"tasks/update_files/{task['uid']}.jsonl", task["_documents"]))
    members += [("tasks", None), ("tasks/update_files", None)]
    members += [(name, _jsonl(docs)) for name, docs in update_files]
    if not behaviour.has_batches:
        for row in rows:
            row.pop("batchUid", None)
    members.append(("tasks/queue.jsonl", _jsonl(rows)))
    if behaviour.has_batches:
        batches = [store.batches[uid] for uid in sorted(store.batches)]
        members += [("batches", None), ("batches/queue.jsonl", _jsonl(batches))]
    members.append(("experimental-features.json", json.dumps(store.features).encode()))
    if behaviour.has_batches:
        members.append(("network.json", json.dumps(store.network).encode()))
    if behaviour.dumps_chat_settings:
        members.append(("chat-completions-settings", None))

    path = Path(dump_dir) / f"{dump_uid}.dump"
    _write_tar_gz(path, members)
    return path


def read_dump(path: Path, store: Store) -> None:
    """Load a V6 dump into an empty store (``meilisearch --import-dump``)."""
    files = _read_tar_gz(path)
    try:
        metadata = json.loads(files["metadata.json"])
    except KeyError:
        raise MeiliStartupError(f"{path}: not a Meilisearch dump (no metadata.json)") from None
    if metadata.get("dumpVersion") != "V6":
        raise MeiliStartupError(
            f"{path}: dump version {metadata.get('dumpVersion')} is not supported by the test "
            "server (only V6)"
        )
    if "instance_uid.uuid" in files:
        store.instance_uid = files["instance_uid.uuid"].decode().strip()
    for line in files.get("keys.jsonl", b"").splitlines():
        if line.strip():
            store.add_key(json.loads(line))
    for name, data in sorted(files.items()):
        match = re.fullmatch(r"indexes/([^/]+)/metadata\.json", name)
        if not match:
            continue
        meta = json.loads(data)
        base = f"indexes/{match.group(1)}"
        docs = [json.loads(d) for d in files.get(f"{base}/documents.jsonl", b"").splitlines() if d]
        settings = json.loads(files.get(f"{base}/settings.json", b"{}"))
        store.indexes[meta["uid"]] = Index.from_json(
            {**meta, "settings": settings, "documents": docs}
        )
    for line in files.get("tasks/queue.jsonl", b"").splitlines():
        if not line.strip():
            continue
        task = task_from_dump(json.loads(line))
        if task["status"] == "processing":
            task.update(status="enqueued", startedAt=None, batchUid=None)
        update = files.get(f"tasks/update_files/{task['uid']}.jsonl")
        if update is not None:
            task["_documents"] = [json.loads(d) for d in update.splitlines() if d.strip()]
        store.tasks[task["uid"]] = task
    for line in files.get("batches/queue.jsonl", b"").splitlines():
        if line.strip():
            batch = json.loads(line)
            store.batches[batch["uid"]] = batch
    store.next_task_uid = max(store.tasks, default=-1) + 1
    store.next_batch_uid = max(store.batches, default=-1) + 1
    if "experimental-features.json" in files:
        store.features.update(json.loads(files["experimental-features.json"]))
    if "network.json" in files:
        store.network = json.loads(files["network.json"])


# --------------------------------------------------------------------------- snapshots


def _state_with_finished(store: Store, current: dict[str, Any] | None) -> dict[str, Any]:
    state = store.to_json()
    if current is not None:
        stamp = fmt_time(now())
        for task in state["tasks"]:
            if task["uid"] == current["uid"]:
                task.update(status="succeeded", finishedAt=stamp, duration="PT0S")
    return state


def write_snapshot(
    store: Store, path: Path, version: str, current: dict[str, Any] | None = None
) -> Path:
    """Write the snapshot at ``path`` (own format; the version is recorded)."""
    state = _state_with_finished(store, current)
    members: list[tuple[str, bytes | None]] = [
        ("VERSION", version.encode()),
        ("instance-uid", store.instance_uid.encode()),
        ("state.json", json.dumps(state).encode()),
    ]
    _write_tar_gz(Path(path), members)
    return path


def _check_version(found: str, version: str) -> None:
    if found != version:
        raise MeiliStartupError(
            f"Your database version ({found}) is incompatible with your current engine "
            f"version ({version}).\nTo migrate data between Meilisearch versions, please "
            "follow our guide on https://www.meilisearch.com/docs/learn/update_and_migration/updating."
        )


def read_snapshot(path: Path, store: Store, version: str) -> None:
    files = _read_tar_gz(path)
    if "VERSION" not in files or "state.json" not in files:
        raise MeiliStartupError(f"{path}: not a snapshot of the Meilisearch test server")
    _check_version(files["VERSION"].decode().strip(), version)
    store.load_json(json.loads(files["state.json"]))


# --------------------------------------------------------------------------- data dir


def data_dir_exists(data_dir: Path) -> bool:
    return (data_dir / "state.json").exists()


def save_data_dir(store: Store, data_dir: Path, version: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("VERSION", version), ("state.json", json.dumps(store.to_json()))):
        tmp = data_dir / f".{name}.tmp"
        tmp.write_text(content)
        os.replace(tmp, data_dir / name)


def load_data_dir(store: Store, data_dir: Path, version: str) -> None:
    found = (data_dir / "VERSION").read_text().strip()
    _check_version(found, version)
    store.load_json(json.loads((data_dir / "state.json").read_text()))
