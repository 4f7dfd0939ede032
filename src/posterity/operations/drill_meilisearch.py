"""The Meilisearch drill: restore every index beside the live ones, count, query, delete.

Every index the backup can restore through the API (each ``export`` artifact; without
exports, every index of the ``dump``) is restored by the Meilisearch restorer
(``restorers/meilisearch.py``: ``restore_indexes``, as ``restore --index UID --as NEW`` does) into a temporary index
``<uid>__drill_<hex>`` on the configured server — the live indexes are never written to.
Then, per index:

- document count: equal to the count the backup recorded (the export's own count, or the
  dump's ``index_counts``; counts taken while the server was busy are only compared loosely);
- primary key: the one recorded at backup time;
- sample query: ``POST /indexes/<tmp>/search`` with ``q: ""`` and ``limit: 1`` returns a hit
  (none for an empty index), and a query made of a word of the first document's searchable
  attributes returns at least one hit.

Afterwards every index named ``*__drill_<hex>`` (and a restore's own ``__posterity_*``
temporaries of those) is deleted — also when the restore or a check failed — and the index
list is read again: an index left behind fails the drill and is named.

A backup holding only a snapshot cannot be drilled here: Meilisearch imports a snapshot
only at start-up into an empty database, never beside live indexes. The drill then fails with
a ``ConfigError`` (exit 2) saying it needs mode export or dump, and stores a report with a
failed ``restore`` check — it never passes without having restored anything.

``restore_seconds`` is the wall time of the restore (download, decrypt, document batches,
waiting for Meilisearch to index them) — the RTO for restoring through the API.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from ..errors import ConfigError, PosterityError
from .drill import DrillRun
from .drill_report import CheckResult

_WORD = re.compile(r"[^\W_]{3,}")
_SKIP_FIELDS = ("_vectors", "_geo", "_rankingScore")


def drill_meilisearch(run: DrillRun) -> None:
    from ..sources.meilisearch.client import MeiliClient
    from ..sources.meilisearch.export import EXPORT_KIND
    from ..sources.meilisearch.source import DUMP_KIND, SNAPSHOT_KIND
    from .restore_results import MeilisearchIndexesResult
    from .restorers.meilisearch import RESTORER, MeilisearchRestoreRequest

    cfg, manifest, report = run.config, run.manifest, run.report
    exports = manifest.artifacts_of_kind(EXPORT_KIND)
    dumps = manifest.artifacts_of_kind(DUMP_KIND)
    if not exports and not dumps:
        what = (
            "only a snapshot" if manifest.artifacts_of_kind(SNAPSHOT_KIND) else "no export or dump"
        )
        report.target = "none"
        report.checks.append(
            CheckResult(
                "restore", False, f"not drillable: the backup holds {what} (needs export or dump)"
            )
        )
        raise ConfigError(
            f"Backup {manifest.id} holds {what}: a drill restores indexes beside the live ones through "
            "the API, which needs a backup taken with mode export or dump (Meilisearch imports a "
            "snapshot only at start-up, into an empty database).",
            hint=f'Add "export" (or "dump") to modes in [sources.{manifest.source}] next to "snapshot", '
            "then back up and drill again.",
        )
    origin = "export" if exports else "dump"
    arts = exports or dumps[:1]
    expected, exact = _expected_counts(manifest, origin)
    suffix = f"__drill_{secrets.token_hex(4)}"
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    with MeiliClient(cfg.url, key, task_timeout=cfg.task_timeout) as client:
        report.target = f"temporary indexes <index>{suffix} on {client.where} (from the {origin})"
        try:
            req = MeilisearchRestoreRequest(all_indexes=True, as_suffix=suffix, prefer=origin)
            run.progress.start(f"drill {manifest.source} {manifest.id}", None)
            t0 = time.monotonic()
            try:
                # The kind's restorer (its own connection), without the guard: the drill has its own
                # audit record and report.
                result = RESTORER.run(run.ctx, manifest.source, manifest, run.identities, req, run.progress)
            finally:
                run.progress.stop()
            report.restore_seconds = round(time.monotonic() - t0, 3)
            report.bytes = sum(a.raw_size for a in arts)
            assert isinstance(result, MeilisearchIndexesResult)
            report.warnings.extend(result.warnings)
            recorded = manifest.facts.get("indexes") or {}
            for entry in result.indexes:
                uid, tmp = entry["index"], entry["target"]
                want_pk = (recorded.get(uid) or {}).get("primary_key") or entry.get("primary_key")
                report.checks.extend(
                    _index_checks(client, uid, tmp, expected.get(uid), exact, want_pk)
                )
            if not result.indexes:
                report.checks.append(CheckResult("indexes", True, "the backup holds no index"))
        finally:
            _clean_up(run, client, suffix)


def _expected_counts(manifest: Any, origin: str) -> tuple[dict[str, int | None], bool]:
    """Document counts of what the restore reads, and whether they are exact."""
    from ..sources.meilisearch.export import EXPORT_KIND
    from ..sources.meilisearch.source import DUMP_KIND

    if origin == "export":
        return {
            str(a.facts.get("index")): a.facts.get("documents")
            for a in manifest.artifacts_of_kind(EXPORT_KIND)
        }, True
    for art in manifest.artifacts_of_kind(DUMP_KIND):
        if "index_counts" in art.facts:
            return dict(art.facts["index_counts"]), bool(art.facts.get("counts_exact"))
    indexes = manifest.facts.get("indexes") or {}
    return {uid: (i or {}).get("documents") for uid, i in indexes.items()}, False


def _index_checks(
    client: Any, uid: str, tmp: str, want: int | None, exact: bool, want_pk: str | None
) -> list[CheckResult]:
    out: list[CheckResult] = []
    try:
        got = client.get(f"/indexes/{tmp}/stats").get("numberOfDocuments")
        info = client.get(f"/indexes/{tmp}")
    except PosterityError as exc:
        return [
            CheckResult(
                f"{uid}: documents", False, f"could not read the restored index: {exc.message}"
            )
        ]
    if want is None:
        out.append(
            CheckResult(
                f"{uid}: documents", True, f"{got} documents (the backup recorded no count)", got
            )
        )
    elif got == want:
        out.append(
            CheckResult(
                f"{uid}: documents", True, f"{got} documents, as recorded at backup time", got
            )
        )
    elif not exact:
        out.append(
            CheckResult(
                f"{uid}: documents",
                True,
                f"{got} documents; {want} were counted while the server was still busy (not exact), "
                "and the restore itself checked every document it sent",
                got,
            )
        )
    else:
        out.append(
            CheckResult(
                f"{uid}: documents", False, f"{got} documents, the backup recorded {want}", got
            )
        )
    pk = info.get("primaryKey")
    if want_pk is None or pk == want_pk:
        out.append(
            CheckResult(
                f"{uid}: primary key", True, repr(pk) + (", as recorded" if want_pk else ""), pk
            )
        )
    else:
        out.append(
            CheckResult(
                f"{uid}: primary key", False, f"{pk!r}, the backup recorded {want_pk!r}", pk
            )
        )
    out.append(_sample_query(client, uid, tmp, got))
    return out


def _sample_query(client: Any, uid: str, tmp: str, documents: int | None) -> CheckResult:
    name = f"{uid}: sample query"
    try:
        empty = client.request("POST", f"/indexes/{tmp}/search", json={"q": "", "limit": 1})
        hits = empty.get("hits") or []
        total = empty.get("estimatedTotalHits", empty.get("totalHits", len(hits)))
        if documents == 0:
            if hits:
                return CheckResult(
                    name, False, "the index is empty, yet the empty query returned a hit"
                )
            return CheckResult(name, True, "the index is empty; the empty query returns no hit", 0)
        if not hits:
            return CheckResult(
                name,
                False,
                f"the empty query returned no hit although the index holds {documents} documents",
            )
        settings = client.get(f"/indexes/{tmp}/settings")
        first: list[dict[str, Any]] = next(client.documents(tmp, 1), [])
        word = pick_word(first[0] if first else {}, settings)
        if word is None:
            return CheckResult(
                name,
                True,
                f"empty query: {total} hits; the first document has no searchable word to query",
                total,
            )
        found = client.request("POST", f"/indexes/{tmp}/search", json={"q": word, "limit": 1})
    except PosterityError as exc:
        return CheckResult(name, False, f"the search failed: {exc.message}")
    n = found.get("estimatedTotalHits", found.get("totalHits", len(found.get("hits") or [])))
    if not found.get("hits"):
        return CheckResult(
            name,
            False,
            f"empty query: {total} hits; query {word!r} (a word of the first document): no hit",
        )
    return CheckResult(name, True, f"empty query: {total} hits; query {word!r}: {n} hits", total)


def pick_word(doc: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """A word of ``doc`` that a search should find: from a searchable attribute, not a stop word."""
    searchable = settings.get("searchableAttributes") or ["*"]
    stop = {str(w).lower() for w in settings.get("stopWords") or []}
    if "*" in searchable:
        values = [v for k, v in doc.items() if k not in _SKIP_FIELDS]
    else:
        values = [_at(doc, str(a).split(".")) for a in searchable]
    for value in values:
        for text in _strings(value):
            for word in _WORD.findall(text):
                if any(c.isalpha() for c in word) and word.lower() not in stop:
                    return word
    return None


def _at(doc: Any, path: list[str]) -> Any:
    """``meta.tags`` of a document: the value at a dotted path (through lists too)."""
    if not path:
        return doc
    if isinstance(doc, list):
        return [_at(d, path) for d in doc]
    if isinstance(doc, dict):
        if ".".join(path) in doc:  # a top-level key with a dot in its name
            return doc[".".join(path)]
        return _at(doc.get(path[0]), path[1:])
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _clean_up(run: DrillRun, client: Any, suffix: str) -> None:
    """Delete every index this drill created and check that none is left."""
    report = run.report
    ours = re.compile(rf"{re.escape(suffix)}(__posterity_[0-9a-f]+)?$")
    deleted: list[str] = []
    failed: list[str] = []
    try:
        for uid in [i["uid"] for i in client.indexes() if ours.search(str(i.get("uid")))]:
            try:
                task = client.enqueue("DELETE", f"/indexes/{uid}")
                client.wait_task(task, timeout=min(client.task_timeout, 60))
                deleted.append(uid)
            except PosterityError as exc:
                failed.append(f"{uid} ({exc.message})")
        left = [i["uid"] for i in client.indexes() if ours.search(str(i.get("uid")))]
    except PosterityError as exc:
        report.cleanup = (
            f"FAILED to list the indexes on {client.where} to delete the drill's: {exc.message}; "
            f"delete every index whose name ends in {suffix} by hand"
        )
        report.warnings.append(report.cleanup)
        report.checks.append(CheckResult("temporary indexes removed", False, report.cleanup))
        return
    if left:
        why = f" ({'; '.join(failed)})" if failed else ""
        report.cleanup = (
            f"FAILED: {len(left)} temporary index(es) left on {client.where}: {', '.join(left)}{why}; "
            "delete them with DELETE /indexes/<uid>"
        )
        report.warnings.append(report.cleanup)
        report.checks.append(CheckResult("temporary indexes removed", False, report.cleanup, left))
        return
    if deleted:
        report.cleanup = f"{len(deleted)} temporary index(es) deleted; no *{suffix} index left"
    else:
        report.cleanup = f"no temporary index was left to delete (no *{suffix} index on the server)"
