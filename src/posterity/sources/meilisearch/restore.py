"""Restore Meilisearch indexes with zero downtime, and snapshot/dump files to a path.

Per index (from an export artifact, or from ``indexes/<uid>/`` inside a dump artifact):

1. Refuse, before touching anything, a target index that exists unless ``replace`` is set.
2. Create ``<target>__posterity_<hex>``, apply the backed-up settings, add the documents in
   NDJSON batches (a few tasks in flight, one batch in memory), wait for every task to
   succeed, and check the document count and primary key.
3. Only when every index is loaded and the stored bytes' sha256 has checked out: create an
   empty placeholder for targets that do not exist, then one ``POST /swap-indexes`` with every
   pair, so all live indexes change atomically in one task.
4. Delete the temporary indexes (which now hold the old data) after the swap succeeded.

Any failure before the swap deletes the temporary indexes (and placeholders): the live
indexes are never written to. A swap that times out is left alone and described, because
its outcome is unknown and a wrong clean-up could delete live data.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ...errors import (
    ConfigError,
    DumpFailed,
    PosterityError,
    RestoreFailed,
    RestoreTargetError,
    reworded,
)
from .client import MeiliApiError, MeiliClient, TaskFailed, TaskTimeout
from .dumpfile import walk_dump
from .export import CHUNK, EXPORT_KIND, parse_header
from .index_loader import Loader, Plan, temp_name
from .source import DUMP_KIND

log = logging.getLogger(__name__)


class IndexExists(RestoreTargetError):
    """The target index already exists."""


class SwapOutcomeUnknown(RestoreFailed):
    """The swap task did not finish in time; nothing was cleaned up."""


@dataclass
class IndexRestore:
    """What to restore: ``indexes`` (None = every index of the backup), where, and how."""

    indexes: list[str] | None
    as_name: str | None = None
    as_suffix: str | None = None  # every index as ``<uid><as_suffix>`` (the drill's throwaway copies)
    replace: bool = False
    prefer: str | None = None  # "export" or "dump"; default: export when it has every index
    staging_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)


class _DumpHandler:
    """Receives ``indexes/<uid>/<file>`` from the dump stream and feeds the loaders."""

    def __init__(self, restorer: _IndexRestorer) -> None:
        self.r = restorer

    def index_file(self, uid: str, name: str, fh: IO[bytes]) -> None:
        plan = self.r.plan_for(uid)
        if plan is None:
            return
        loader = self.r.loader(plan)
        if name == "metadata.json":
            meta = json.loads(fh.read())
            plan.primary_key = meta.get("primaryKey")
            plan.meta_seen = True
        elif name == "settings.json":
            plan.settings = json.loads(fh.read())
            if plan.meta_seen:
                loader.apply_settings()
        elif name == "documents.jsonl":
            if plan.meta_seen:
                loader.apply_settings()
                loader.add_lines(fh)
            else:  # documents before metadata: keep them on disk until the primary key is known
                folder = self.r.req.staging_dir
                if folder is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                spool = tempfile.TemporaryFile(dir=folder, prefix="posterity-meili-")  # noqa: SIM115
                plan.spool = spool  # closed once loaded, or by clean_up
                while chunk := fh.read(CHUNK):
                    spool.write(chunk)


class _IndexRestorer:
    def __init__(self, client: MeiliClient, repo: Any, manifest: Any, identities: list, req: IndexRestore) -> None:
        self.c = client
        self.repo = repo
        self.m = manifest
        self.ids = identities
        self.req = req
        self.plans: dict[str, Plan] = {}
        self.all_from_dump = False
        self._loaders: dict[str, Loader] = {}

    # -- planning ------------------------------------------------------------------------
    def choose(self) -> tuple[str, list[str]]:
        exports = {a.facts.get("index"): a for a in self.m.artifacts_of_kind(EXPORT_KIND)}
        dumps = self.m.artifacts_of_kind(DUMP_KIND)
        recorded = list((self.m.facts.get("indexes") or {}).keys())
        wanted = self.req.indexes
        if self.req.prefer == "dump" or (self.req.prefer is None and not exports) or (
            wanted and self.req.prefer is None and not set(wanted) <= set(exports) and dumps
        ):
            if not dumps:
                raise ConfigError(
                    f"Backup {self.m.id} holds no dump to restore indexes from.",
                    hint="Use a backup taken with mode dump or export (`posterity show ID` lists its artifacts).",
                )
            available = recorded
            origin = "dump"
        else:
            if not exports:
                raise ConfigError(f"Backup {self.m.id} holds no index export.",
                                  hint="Use a backup taken with mode export or dump, or --snapshot-to.")
            available = list(exports)
            origin = "export"
        if wanted:
            missing = [u for u in wanted if u not in available]
            if missing:
                raise ConfigError(
                    f"Backup {self.m.id} holds no index {', '.join(map(repr, missing))} ({origin}).",
                    hint=f"It holds: {', '.join(available) or 'no index'}.",
                )
            return origin, list(wanted)
        if origin == "dump":
            self.all_from_dump = True
        return origin, available

    def plan(self, uids: list[str]) -> None:
        if self.req.as_name and len(uids) != 1:
            raise ConfigError("--as renames one index; give exactly one --index with it.")
        existing: list[str] = []
        for uid in uids:
            target = self.req.as_name or uid + (self.req.as_suffix or "")
            if self.c.index(target) is not None:
                existing.append(target)
            self.plans[uid] = Plan(uid=uid, target=target, temp=temp_name(target))
        if existing and not self.req.replace:
            raise IndexExists(
                f"The index {', '.join(map(repr, existing))} already exists on {self.c.where}; nothing was changed.",
                hint="Add --replace to swap the restored copy in atomically (the live index keeps serving until "
                "the swap), or restore beside it with --as NEW_NAME.",
            )

    def plan_for(self, uid: str) -> Plan | None:
        plan = self.plans.get(uid)
        if plan is None and self.all_from_dump:  # an index created after the metadata was read
            self.plan([uid])
            plan = self.plans[uid]
        return plan

    def loader(self, plan: Plan) -> Loader:
        if plan.uid not in self._loaders:
            self._loaders[plan.uid] = Loader(self.c, plan, self.req.warnings)
        return self._loaders[plan.uid]

    # -- loading -------------------------------------------------------------------------
    def load_exports(self) -> None:
        exports = {a.facts.get("index"): a for a in self.m.artifacts_of_kind(EXPORT_KIND)}
        for plan in self.plans.values():
            art = exports[plan.uid]
            reader = self.repo.open_artifact(art, self.ids)
            try:
                buffered = io.BufferedReader(reader, CHUNK)
                head = parse_header(buffered.readline(), art.key)
                plan.primary_key = head["index"].get("primaryKey")
                plan.settings = head.get("settings")
                plan.documents = art.facts.get("documents")
                loader = self.loader(plan)
                loader.apply_settings()
                loader.add_lines(buffered)
                reader.finish()  # sha256 of the stored object checked before anything is swapped
                loader.finish()
            finally:
                reader.close()

    def load_dump(self) -> None:
        art = self.m.artifacts_of_kind(DUMP_KIND)[0]
        reader = self.repo.open_artifact(art, self.ids)
        try:
            walk_dump(io.BufferedReader(reader, CHUNK), _DumpHandler(self), art.key)
            reader.finish()
        finally:
            reader.close()
        for uid, plan in list(self.plans.items()):
            if not plan.meta_seen:
                if self.all_from_dump:  # deleted between the metadata and the dump
                    self.req.warnings.append(f"index {uid!r} was listed at backup time but is not in the dump.")
                    del self.plans[uid]
                    continue
                raise RestoreFailed(f"The dump in backup {self.m.id} holds no index {uid!r}.")
            loader = self.loader(plan)
            loader.apply_settings()
            if plan.spool is not None:
                plan.spool.seek(0)
                loader.add_lines(plan.spool)
                plan.spool.close()
                plan.spool = None
            loader.finish()

    # -- swapping ------------------------------------------------------------------------
    def swap(self) -> int:
        for plan in self.plans.values():
            if self.c.index(plan.target) is None:
                self.c.wait_task(self.c.enqueue("POST", "/indexes",
                                                json={"uid": plan.target, "primaryKey": plan.primary_key}))
                plan.placeholder = True  # only now is it ours to delete again
        pairs = [{"indexes": [p.target, p.temp]} for p in self.plans.values()]
        uid = self.c.enqueue("POST", "/swap-indexes", json=pairs)
        try:
            self.c.wait_task(uid)
        except TaskTimeout as exc:
            names = ", ".join(f"{p.target} ⇄ {p.temp}" for p in self.plans.values())
            raise SwapOutcomeUnknown(
                f"The swap task {uid} ({names}) did not finish within task_timeout; nothing was cleaned up "
                "because its outcome is unknown.",
                hint=f"Watch GET /tasks/{uid}. If it succeeds, the restore is live and the *__posterity_* indexes "
                "hold the old data (delete them); if it fails, delete the *__posterity_* indexes.",
            ) from exc
        return uid

    def drop_old(self) -> None:
        for plan in self.plans.values():
            try:
                self.c.wait_task(self.c.enqueue("DELETE", f"/indexes/{plan.temp}"))
            except PosterityError as exc:
                self.req.warnings.append(
                    f"the previous contents of {plan.target!r} remain in index {plan.temp!r} "
                    f"(deleting it failed: {exc.message}); delete it with DELETE /indexes/{plan.temp}."
                )

    def clean_up(self) -> list[str]:
        notes = []
        for plan in self.plans.values():
            if plan.spool is not None:
                plan.spool.close()
            for name, made in ((plan.temp, plan.created), (plan.target, plan.placeholder)):
                if not made:
                    continue
                try:
                    self.c.wait_task(self.c.enqueue("DELETE", f"/indexes/{name}"), timeout=min(self.c.task_timeout, 60))
                    notes.append(f"the temporary index {name!r} was deleted")
                except PosterityError as exc:
                    notes.append(f"the temporary index {name!r} could not be deleted ({exc.message}); delete it by hand")
        return notes


def restore_indexes(
    client: MeiliClient, repo: Any, manifest: Any, identities: list, req: IndexRestore
) -> dict[str, Any]:
    r = _IndexRestorer(client, repo, manifest, identities, req)
    origin, uids = r.choose()
    r.plan(uids)
    swapped = False
    try:
        if origin == "export":
            r.load_exports()
        else:
            r.load_dump()
        swap_task = r.swap()
        swapped = True
    except BaseException as exc:
        if isinstance(exc, SwapOutcomeUnknown):
            raise
        notes = r.clean_up() if not swapped else []
        targets = ", ".join(repr(p.target) for p in r.plans.values())
        note = f" Nothing was swapped: {targets} unchanged" + (f"; {'; '.join(notes)}." if notes else ".")
        if isinstance(exc, TaskFailed | DumpFailed | MeiliApiError):
            raise RestoreFailed(f"Restore from backup {manifest.id} failed: {exc.message}{note}",
                                hint=exc.hint or None) from exc
        if isinstance(exc, PosterityError):
            raise reworded(exc, exc.message + note) from exc
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise RestoreFailed(f"Restore from backup {manifest.id} failed: {exc}.{note}") from exc
    r.drop_old()
    return {
        "backup": manifest.id,
        "from": origin,
        "swap_task": swap_task,
        "indexes": [
            {"index": p.uid, "target": p.target, "documents": p.sent, "primary_key": p.primary_key,
             "created": p.placeholder}
            for p in r.plans.values()
        ],
        "warnings": req.warnings,
    }
