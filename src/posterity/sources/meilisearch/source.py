"""Meilisearch backups: a metadata artifact, then a snapshot, a dump and/or an API export.

Artifacts of one backup, in this order:

    metadata.json             kind meilisearch-metadata: version, stats, indexes, every index's
                              settings, experimental features, API keys (with their values) —
                              encrypted like every payload; a redacted copy (no key values, no
                              embedder secrets) goes into the manifest's facts for `show`
    <db>.snapshot             kind meilisearch-snapshot (mode snapshot): Meilisearch's own file, named
                              after the last component of --db-path (data.ms.snapshot by default)
    <dumpUid>.dump            kind meilisearch-dump (mode dump): Meilisearch's own file
    index-<uid>.ndjson        kind meilisearch-export (mode export): see export.py

Snapshots and dumps are stored byte for byte as Meilisearch wrote them (they are the
"standard artifact": ``age -d | zstd -d`` gives a file ``meilisearch --import-…`` reads).
The local dump file is deleted once every artifact of the backup is stored; a snapshot file is
left in place (Meilisearch overwrites it on the next run).

Consistency: ``facts["consistency_marker"]["last_task_uid"]`` is the newest task when the
backup started. An export reads each index page by page while the server stays live, so it
counts the documents it read and fails when that differs from the index's stats afterwards.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from ...errors import DumpFailed, SourceAuthError, SourceError
from ..base import Artifact, Source
from . import find_snapshot
from .client import MeiliApiError, MeiliClient
from .config import MeilisearchConfig
from .export import EXPORT_KIND, ExportStream, export_name, header_line
from .hostfiles import DirectoryError, check_dir, file_artifact, open_output
from .redact import redact_settings, scrub
from .sizing import export_size

log = logging.getLogger(__name__)

META_KIND = "meilisearch-metadata"
SNAPSHOT_KIND = "meilisearch-snapshot"
DUMP_KIND = "meilisearch-dump"


class DocumentCountMismatch(DumpFailed):
    """The documents read do not match the index's document count."""


class MeilisearchSource(Source):
    kind = "meilisearch"
    config: MeilisearchConfig

    def __init__(self, name: str, config: MeilisearchConfig) -> None:
        super().__init__(name, config)
        self._facts: dict[str, Any] = {}
        self._client: MeiliClient | None = None
        self._secrets: list[str] = []

    @property
    def client(self) -> MeiliClient:
        if self._client is None:
            key = self.config.api_key.get_secret_value() if self.config.api_key else None
            self._client = MeiliClient(self.config.url, key, task_timeout=self.config.task_timeout)
        return self._client

    def check(self) -> dict[str, Any]:
        c = self.client
        c.health()  # public: proves the server answers before the key is judged
        version = c.version()
        if "snapshot" in self.config.modes:
            assert self.config.snapshot_dir is not None
            if not c.info().has_snapshot_route:
                raise SourceError(
                    f"Meilisearch {version} at {c.where} cannot take a snapshot on request "
                    "(POST /snapshots exists from v1.5.0).",
                    hint="Use mode dump or export with this version, or upgrade Meilisearch to 1.5 or newer.",
                )
            check_dir(self.config.snapshot_dir, "snapshot", "snapshot")
        if "dump" in self.config.modes:
            assert self.config.dump_dir is not None
            check_dir(self.config.dump_dir, "dump", "dump")
        facts = {
            "meilisearch_version": version,
            "server_version": version,
            "url": c.where,
            "modes": list(self.config.modes),
        }
        self._facts.update(facts)
        return facts

    def facts(self) -> dict[str, Any]:
        return scrub(self._facts, self._secrets)

    # -- the backup ----------------------------------------------------------------------
    def dump(self) -> Iterator[Artifact]:
        if "meilisearch_version" not in self._facts:
            self.check()
        meta = self._metadata()
        yield Artifact(
            name="metadata.json",
            kind=META_KIND,
            stream=io.BytesIO(json.dumps(meta, indent=2, ensure_ascii=False).encode() + b"\n"),
            expected_size=1 << 20,
            facts={"format": "posterity-meilisearch-metadata"},
        )
        to_delete: list[Path] = []
        done = False
        try:
            for mode in self.config.modes:
                if mode == "snapshot":
                    yield self._snapshot()
                elif mode == "dump":
                    art, path = self._dump_file()
                    to_delete.append(path)
                    yield art
                else:
                    yield from self._export(meta)
            done = True
        finally:
            if not done:
                for path in to_delete:
                    log.warning("The dump %s is kept because the backup did not complete; delete it when done.", path)
        # Every artifact is stored (the loop above only resumes after each finish()).
        for path in to_delete:
            try:
                path.unlink()
                self._facts.setdefault("dump", {})["local_file_deleted"] = True
            except OSError as exc:
                log.warning("Could not delete the stored dump %s: %s", path, exc)
                self._facts.setdefault("dump", {})["local_file_deleted"] = False

    def _metadata(self) -> dict[str, Any]:
        c = self.client
        last = c.last_task_uid()
        pending = c.pending_tasks()
        version = c.get("/version")
        stats = c.get("/stats")
        indexes = c.indexes()
        counts = stats.get("indexes") or {}
        settings = {i["uid"]: c.get(f"/indexes/{i['uid']}/settings") for i in indexes}
        try:
            features: dict[str, Any] | None = c.get("/experimental-features")
        except (MeiliApiError, SourceAuthError) as exc:
            features, self._facts["experimental_features_note"] = None, exc.message
        try:
            keys: list[dict[str, Any]] | None = c.keys()
        except (MeiliApiError, SourceAuthError) as exc:
            keys = None
            self._facts["keys_note"] = f"API keys not recorded: {exc.message} (reading them needs the master key)"
        self._secrets = [k["key"] for k in keys or [] if k.get("key")]
        if self.config.api_key:
            self._secrets.append(self.config.api_key.get_secret_value())
        for s in settings.values():
            for emb in (s.get("embedders") or {}).values():
                if isinstance(emb, dict) and isinstance(emb.get("apiKey"), str) and emb["apiKey"]:
                    self._secrets.append(emb["apiKey"])
        index_facts = {
            i["uid"]: {
                "primary_key": i.get("primaryKey"),
                "documents": (counts.get(i["uid"]) or {}).get("numberOfDocuments"),
                "created_at": i.get("createdAt"),
                "updated_at": i.get("updatedAt"),
            }
            for i in indexes
        }
        self._facts.update(
            {
                "meilisearch_version": version.get("pkgVersion"),
                "server_version": version.get("pkgVersion"),
                "commit_sha": version.get("commitSha"),
                "stats": {k: stats.get(k) for k in ("databaseSize", "usedDatabaseSize", "lastUpdate")},
                "indexes": index_facts,
                "settings": {uid: redact_settings(s) for uid, s in settings.items()},
                "experimental_features": features,
                "keys": None
                if keys is None
                else [{k: key.get(k) for k in ("uid", "name", "description", "actions", "indexes", "expiresAt",
                                               "createdAt", "updatedAt")} for key in keys],
                "consistency_marker": {"last_task_uid": last},
                "pending_tasks_at_start": pending,
            }
        )
        return {
            "format": "posterity-meilisearch-metadata",
            "version": 1,
            "taken_at": datetime.now(UTC).isoformat(),
            "url": c.where,
            "meilisearch": version,
            "stats": stats,
            "indexes": [{**i, "numberOfDocuments": index_facts[i["uid"]]["documents"]} for i in indexes],
            "settings": settings,
            "experimental_features": features,
            "keys": keys,
            "last_task_uid": last,
            "pending_tasks": pending,
        }

    def _counts_after(self, task_uid: int) -> dict[str, Any]:
        """Document counts right after a snapshot/dump task, and whether they are exact."""
        c = self.client
        stats = c.get("/stats")
        marker = self._facts["consistency_marker"]["last_task_uid"]
        quiet = (
            self._facts.get("pending_tasks_at_start") == 0
            and task_uid == (-1 if marker is None else marker) + 1
            and c.last_task_uid() == task_uid
        )
        counts = {uid: s.get("numberOfDocuments") for uid, s in (stats.get("indexes") or {}).items()}
        return {"index_counts": counts, "counts_exact": quiet}

    def _snapshot(self) -> Artifact:
        assert self.config.snapshot_dir is not None
        c = self.client
        started = time.time()
        before = find_snapshot.listing(self.config.snapshot_dir)
        uid = c.enqueue("POST", "/snapshots")
        task = c.wait_task(uid)
        path = find_snapshot.written(self.config.snapshot_dir, self.config.db_path, before, uid)
        fh = open_output(path, "snapshot")
        st = os.fstat(fh.fileno())
        if st.st_mtime < started - 2:
            fh.close()
            raise DirectoryError(
                f"{path} was not written by snapshot task {uid} (last modified "
                f"{datetime.fromtimestamp(st.st_mtime, UTC):%Y-%m-%d %H:%M:%S} UTC, before the task started).",
                hint="snapshot_dir must be the --snapshot-dir of the Meilisearch server at url.",
            )
        facts = {"task_uid": uid, "meilisearch_version": self._facts["meilisearch_version"],
                 "file": str(path), "finished_at": task.get("finishedAt"), **self._counts_after(uid)}
        self._facts["snapshot"] = {"task_uid": uid}
        return file_artifact(path.name, SNAPSHOT_KIND, fh, st.st_size, facts, path)

    def _dump_file(self) -> tuple[Artifact, Path]:
        assert self.config.dump_dir is not None
        c = self.client
        uid = c.enqueue("POST", "/dumps")
        task = c.wait_task(uid)
        dump_uid = (task.get("details") or {}).get("dumpUid")
        if not dump_uid:
            raise DumpFailed(f"Meilisearch dump task {uid} succeeded without a dumpUid: {task.get('details')!r}.")
        path = self.config.dump_dir / f"{dump_uid}.dump"
        fh = open_output(path, "dump")
        size = os.fstat(fh.fileno()).st_size
        facts = {"task_uid": uid, "dump_uid": dump_uid, "meilisearch_version": self._facts["meilisearch_version"],
                 "file": str(path), **self._counts_after(uid)}
        self._facts["dump"] = {"task_uid": uid, "dump_uid": dump_uid}
        return file_artifact(f"{dump_uid}.dump", DUMP_KIND, fh, size, facts, path), path

    def _selected(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        indexes = meta["indexes"]
        patterns = self.config.indexes
        if not patterns:
            return indexes
        uids = [i["uid"] for i in indexes]
        for p in patterns:
            if not any(ch in p for ch in "*?[") and p not in uids:
                raise SourceError(
                    f"The index {p!r} listed in indexes does not exist on {self.client.where}.",
                    hint=f"Existing indexes: {', '.join(uids) or 'none'}. Fix indexes in posterity.toml.",
                )
        return [i for i in indexes if any(fnmatch.fnmatchcase(i["uid"], p) for p in patterns)]

    def _export(self, meta: dict[str, Any]) -> Iterator[Artifact]:
        c = self.client
        version = self._facts["meilisearch_version"]
        summary: dict[str, Any] = {"indexes": 0, "documents": 0}
        self._facts["export"] = summary
        for index in self._selected(meta):
            uid = index["uid"]
            settings = meta["settings"][uid]
            stream = ExportStream(c, uid, header_line(index, settings, version), self.config.page_size)
            facts: dict[str, Any] = {"index": uid, "primary_key": index.get("primaryKey"),
                                     "format": "posterity-meilisearch-index/1"}
            before = self._newest_index_task(uid)

            def finish(stream: ExportStream = stream, uid: str = uid, facts: dict[str, Any] = facts,
                       before: int | None = before) -> None:
                stats = c.get(f"/indexes/{uid}/stats")
                expected = stats.get("numberOfDocuments")
                hint = ("Writes reached the index during the export; run the backup again at a quieter time, "
                        "or use mode dump/snapshot for a consistent copy.")
                if stream.count != expected:
                    raise DocumentCountMismatch(
                        f"The export of index {uid!r} read {stream.count} documents, but the index holds "
                        f"{expected}; nothing was committed.", hint=hint,
                    )
                after = self._newest_index_task(uid)
                if after != before:
                    # Paging by offset while documents change can skip or repeat some, even when
                    # the count still matches: any task applied meanwhile makes the copy suspect.
                    raise DocumentCountMismatch(
                        f"Index {uid!r} changed while it was read (task {after} succeeded during the export); "
                        "nothing was committed.", hint=hint,
                    )
                facts["documents"] = stream.count
                summary["indexes"] += 1
                summary["documents"] += stream.count

            yield Artifact(name=export_name(uid), kind=EXPORT_KIND, stream=cast(IO[bytes], stream),
                           expected_size=export_size(self._facts), facts=facts, finish=finish)
        summary["last_task_uid_after"] = c.last_task_uid()

    def _newest_index_task(self, uid: str) -> int | None:
        """The newest succeeded task of an index: tasks of one index are applied in uid order."""
        page = self.client.get("/tasks", indexUids=uid, statuses="succeeded", limit=1)
        results = page.get("results") or []
        return int(results[0]["uid"]) if results else None

    # -- by hand ---------------------------------------------------------------------------
    def by_hand(self, manifest: Any) -> list[str]:
        cmds = []
        for art in manifest.artifacts:
            get = f'rclone cat "$REPO/{art.key}" | age -d -i key.txt | zstd -d'
            if art.kind == SNAPSHOT_KIND:
                cmds.append(f"{get} > {art.name} && meilisearch --db-path NEW.ms --master-key \"$MEILI_MASTER_KEY\" "
                            f"--import-snapshot {art.name}   # Meilisearch {art.facts.get('meilisearch_version')} exactly")
            elif art.kind == DUMP_KIND:
                cmds.append(f"{get} > {art.name} && meilisearch --db-path NEW.ms --master-key \"$MEILI_MASTER_KEY\" "
                            f"--import-dump {art.name}   # Meilisearch {art.facts.get('meilisearch_version')} or newer")
            elif art.kind == EXPORT_KIND:
                uid, pk = art.facts.get("index"), art.facts.get("primary_key")
                auth = '-H "Authorization: Bearer $MEILI_MASTER_KEY"'
                cmds.append(
                    f"{get} > {uid}.ndjson && head -n 1 {uid}.ndjson | jq .settings | curl -X PATCH {auth} "
                    f"-H 'Content-Type: application/json' --data-binary @- \"$MEILI_URL/indexes/{uid}/settings\" && "
                    f"tail -n +2 {uid}.ndjson | curl -X POST {auth} -H 'Content-Type: application/x-ndjson' "
                    f"--data-binary @- \"$MEILI_URL/indexes/{uid}/documents?primaryKey={pk}\""
                )
        return cmds
