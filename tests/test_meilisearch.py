"""Meilisearch backups and restores end to end, through the real command line.

Runs against the in-repo Meilisearch test server (tests/meili), emulating each version of
``tests.meili.versions.MATRIX`` (tests that inject failures run on the newest only), or against a real Meilisearch
when POSTERITY_TEST_MEILISEARCH_URL and POSTERITY_TEST_MEILISEARCH_KEY are set (snapshot and
dump tests then need POSTERITY_TEST_MEILISEARCH_SNAPSHOT_DIR / _DUMP_DIR, the server's own
--snapshot-dir/--dump-dir on this host; tests that need a second server or failure injection
skip). Against a real server every index this module creates starts with a random prefix and is
deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.meili import MeiliTestServer
from tests.meili.versions import MATRIX
from tests.support.project import InProcessRun, Project, make_project, run_in_process

from posterity.config import load_config
from posterity.operations.context import Context
from posterity.repository import new_backup_id
from posterity.repository.layout import payload_key

MASTER = "masterKey-posterity-test-0123456789"
REAL_URL = os.environ.get("POSTERITY_TEST_MEILISEARCH_URL")
REAL_KEY = os.environ.get("POSTERITY_TEST_MEILISEARCH_KEY")
REAL = bool(REAL_URL and REAL_KEY)
EMBEDDER_SECRET = "sk-embedder-secret-0123456789abcdef"
HEADER_SECRET = "tok-header-secret-0123456789"


def make_posters(n: int = 25) -> list[dict[str, Any]]:
    docs = []
    for i in range(1, n + 1):
        doc: dict[str, Any] = {
            "id": i,
            "title": f"Poster {i}: the {['deep', 'quiet', 'odd'][i % 3]} signal",
            "year": 2000 + i % 7,
            "abstract": f"Hidden from search results but kept by backups ({i}) — «ünïcödé»",
            "authors": [{"name": f"Author {i}", "orcid": f"0000-000{i % 10}"}, {"name": "Ada", "orcid": None}],
            "meta": {"venue": {"name": ["NeurIPS", "ICML"][i % 2], "city": "Vienna"}, "tags": ["ml", f"t{i % 4}"],
                     "score": i / 3, "nested": [{"a": [1, [2, 3]]}, {"b": {"c": i % 2 == 0}}]},
            "_vectors": {"default": {"embeddings": [[i / 10, 0.5, -1.25]], "regenerate": False}},
        }
        if i % 5 == 0:
            doc["empty"] = {}
        docs.append(doc)
    return docs


POSTERS = make_posters()
SETTINGS: dict[str, Any] = {
    "displayedAttributes": ["title", "year", "authors", "meta"],
    "searchableAttributes": ["title", "meta.tags", "abstract"],
    "filterableAttributes": ["year", "meta.venue.name"],
    "sortableAttributes": ["year", "title"],
    "rankingRules": ["sort", "words", "typo", "proximity", "attribute", "exactness", "year:desc"],
    "stopWords": ["the", "a"],
    "synonyms": {"poster": ["placard"], "placard": ["poster"]},
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 10},
                      "disableOnWords": ["posterity"], "disableOnAttributes": ["abstract"]},
    "pagination": {"maxTotalHits": 500},
    "faceting": {"maxValuesPerFacet": 50, "sortFacetValuesBy": {"*": "count"}},
    "embedders": {"default": {"source": "userProvided", "dimensions": 3}},
}
AUTHORS = [{"sku": f"a-{i}", "name": f"Author {i}",
            "_vectors": {"remote": {"embeddings": [[i, 0.5, 0.25]], "regenerate": False}}} for i in range(3)]
AUTHOR_SETTINGS: dict[str, Any] = {
    "embedders": {
        "remote": {"source": "rest", "url": "http://embed-user:embed-pass@127.0.0.1:9/embed", "apiKey": EMBEDDER_SECRET,
                   "dimensions": 3, "headers": {"X-Token": HEADER_SECRET},
                   "request": {"input": "{{text}}"}, "response": {"embedding": "{{embedding}}"}},
    },
}


@dataclass
class Meili:
    url: str
    key: str
    prefix: str
    snapshot_dir: Path | None
    dump_dir: Path | None
    server: MeiliTestServer | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def posters(self) -> str:
        return f"{self.prefix}posters"

    @property
    def authors(self) -> str:
        return f"{self.prefix}authors"

    def client(self, url: str | None = None, key: str | None = None) -> httpx.Client:
        c = httpx.Client(base_url=url or self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=20)
        self.clients.append(c)
        return c

    def test_server(self, why: str) -> MeiliTestServer:
        if self.server is None:
            pytest.skip(f"needs the in-repo test server: {why}")
        return self.server


LATEST = MATRIX[-1]
on_latest = pytest.mark.parametrize("meili", ["real" if REAL else LATEST], indirect=True)


@pytest.fixture(params=["real"] if REAL else MATRIX)
def meili(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Meili]:
    if REAL:
        assert REAL_URL and REAL_KEY
        snap = os.environ.get("POSTERITY_TEST_MEILISEARCH_SNAPSHOT_DIR")
        dump = os.environ.get("POSTERITY_TEST_MEILISEARCH_DUMP_DIR")
        m = Meili(REAL_URL.rstrip("/"), REAL_KEY, f"pt{uuid.uuid4().hex[:6]}_",
                  Path(snap) if snap else None, Path(dump) if dump else None)
        try:
            yield m
        finally:
            c = m.client()
            for index in c.get("/indexes", params={"limit": 1000}).json()["results"]:
                if index["uid"].startswith(m.prefix):
                    c.delete(f"/indexes/{index['uid']}")
            for c in m.clients:
                c.close()
        return
    server = MeiliTestServer(master_key=MASTER, data_dir=tmp_path / "meili" / "data.ms",
                             dump_dir=tmp_path / "meili" / "dumps", snapshot_dir=tmp_path / "meili" / "snapshots",
                             version=request.param)
    with server:
        m = Meili(server.url, MASTER, "", server.snapshot_dir, server.dump_dir, server)
        yield m
        for c in m.clients:
            c.close()


def wait(c: httpx.Client, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    uid = r.json()["taskUid"]
    for _ in range(2000):
        task = c.get(f"/tasks/{uid}").json()
        if task["status"] in ("succeeded", "failed", "canceled"):
            assert task["status"] == "succeeded", task
            return task
        time.sleep(0.01)
    raise AssertionError(f"task {uid} did not finish")


def populate(m: Meili) -> dict[str, Any]:
    c = m.client()
    c.patch("/experimental-features", json={"vectorStore": True})  # needed before v1.13; refused later
    wait(c, c.post("/indexes", json={"uid": m.posters, "primaryKey": "id"}))
    wait(c, c.patch(f"/indexes/{m.posters}/settings", json=SETTINGS))
    wait(c, c.post(f"/indexes/{m.posters}/documents", json=POSTERS))
    wait(c, c.post("/indexes", json={"uid": m.authors, "primaryKey": "sku"}))
    wait(c, c.patch(f"/indexes/{m.authors}/settings", json=AUTHOR_SETTINGS))
    wait(c, c.post(f"/indexes/{m.authors}/documents", json=AUTHORS))
    key = c.post("/keys", json={"name": "frontend", "description": "search from the site", "actions": ["search"],
                                "indexes": [m.posters], "expiresAt": "2999-01-01T00:00:00Z"})
    assert key.status_code == 201, key.text
    return key.json()


def index_state(c: httpx.Client, uid: str) -> dict[str, Any]:
    r = c.post(f"/indexes/{uid}/documents/fetch", json={"limit": 10_000, "retrieveVectors": True})
    if r.status_code == 400:  # ≤1.8 does not know retrieveVectors: `_vectors` come as stored
        r = c.post(f"/indexes/{uid}/documents/fetch", json={"limit": 10_000})
    docs = r.json()["results"]
    return {
        "primaryKey": c.get(f"/indexes/{uid}").json()["primaryKey"],
        "settings": c.get(f"/indexes/{uid}/settings").json(),
        "documents": sorted(docs, key=lambda d: str(d.get("id", d.get("sku")))),
    }


def index_uids(c: httpx.Client) -> list[str]:
    return sorted(i["uid"] for i in c.get("/indexes", params={"limit": 1000}).json()["results"])


def run(p: Project, *args: str, env: dict[str, str] | None = None) -> InProcessRun:
    return run_in_process(p, *args, env=env)


def ok(p: Project, *args: str) -> str:
    r = run(p, *args)
    assert r.returncode == 0, f"posterity {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def make(tmp_path: Path, m: Meili, **source: Any) -> Project:
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    body: dict[str, Any] = {"kind": "meilisearch", "url": m.url, "api_key": "${TEST_MEILI_KEY}",
                            "modes": ["export"], "task_timeout": 20, "page_size": 7}
    if REAL:
        body["indexes"] = [f"{m.prefix}*"]
    body.update(source)
    p.sources["search"] = {k: v for k, v in body.items() if v is not None}
    p.env = {"TEST_MEILI_KEY": m.key}
    p.write_config()
    ok(p, "init")
    return p


def backup(p: Project) -> dict[str, Any]:
    out = json.loads(ok(p, "--json", "backup", "search"))
    return json.loads(ok(p, "--json", "show", out["backups"][0]["id"]))


def context(p: Project) -> Context:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in p.env.items():
            mp.setenv(k, v)
        config, _ = load_config(p.config)
    return Context(config)


def read_artifact(p: Project, manifest: dict[str, Any], kind: str) -> bytes:
    ctx = context(p)
    m = ctx.repo.find(manifest["id"], "search")
    out = io.BytesIO()
    ctx.repo.read_artifact(m.artifacts_of_kind(kind)[0], out, ctx.identities())
    return out.getvalue()


def fails(proc, code: int, *needles: str) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode == code, text
    for n in needles:
        assert n in text, text
    return text


# --------------------------------------------------------------------------- backup facts


def test_export_backup_records_metadata_without_secrets(tmp_path: Path, meili: Meili) -> None:
    key = populate(meili)
    c = meili.client()
    p = make(tmp_path, meili)
    last_task = c.get("/tasks", params={"limit": 1}).json()["results"][0]["uid"]
    manifest = backup(p)

    facts = manifest["facts"]
    assert facts["meilisearch_version"] == c.get("/version").json()["pkgVersion"]
    assert facts["consistency_marker"] == {"last_task_uid": last_task}
    assert facts["indexes"][meili.posters]["documents"] == len(POSTERS)
    assert facts["indexes"][meili.posters]["primary_key"] == "id"
    assert facts["indexes"][meili.authors]["primary_key"] == "sku"
    assert facts["settings"][meili.posters] == c.get(f"/indexes/{meili.posters}/settings").json()
    remote = facts["settings"][meili.authors]["embedders"]["remote"]
    assert remote["apiKey"] == "<redacted>" and remote["headers"] == {"X-Token": "<redacted>"}
    assert "embed-pass" not in remote["url"] and remote["dimensions"] == 3
    frontend = next(k for k in facts["keys"] if k["name"] == "frontend")
    assert frontend == {"uid": key["uid"], "name": "frontend", "description": "search from the site",
                        "actions": ["search"], "indexes": [meili.posters], "expiresAt": key["expiresAt"],
                        "createdAt": key["createdAt"], "updatedAt": key["updatedAt"]}
    exports = {a["facts"]["index"]: a for a in manifest["artifacts"] if a["kind"] == "meilisearch-export"}
    assert exports[meili.posters]["facts"]["documents"] == len(POSTERS)
    assert {a["kind"] for a in manifest["artifacts"]} == {"meilisearch-metadata", "meilisearch-export"}

    # No secret anywhere in the manifest as stored in the repository.
    stored = (tmp_path / "repo" / manifest["artifacts"][0]["key"]).parent / "manifest.json"
    text = stored.read_text()
    key_values = [k["key"] for k in c.get("/keys").json()["results"]]
    for secret in [meili.key, EMBEDDER_SECRET, HEADER_SECRET, "embed-pass", *key_values]:
        assert secret not in text
    # The key values are inside the encrypted metadata artifact.
    metadata = json.loads(read_artifact(p, manifest, "meilisearch-metadata"))
    assert sorted(k["key"] for k in metadata["keys"]) == sorted(key_values)
    assert metadata["settings"][meili.posters]["rankingRules"] == SETTINGS["rankingRules"]

    shown = p.run("show", manifest["id"], check=True, env={"COLUMNS": "200"}).stdout
    assert meili.posters in shown and "frontend" in shown and f"last task uid   {last_task}" in shown
    assert "search from the site" in shown and "restore by hand" in shown


# --------------------------------------------------------------------------- export round trips


def test_export_restore_swaps_while_live_index_keeps_serving(tmp_path: Path, meili: Meili) -> None:
    populate(meili)
    c = meili.client()
    original = index_state(c, meili.posters)
    p = make(tmp_path, meili)
    backup(p)

    # Damage the live index: most documents gone, settings changed.
    wait(c, c.post(f"/indexes/{meili.posters}/documents/delete-batch", json=list(range(1, 21))))
    wait(c, c.patch(f"/indexes/{meili.posters}/settings", json={"stopWords": [], "synonyms": {}, "rankingRules": ["words"]}))
    assert c.get(f"/indexes/{meili.posters}/stats").json()["numberOfDocuments"] == 5

    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=meili.url, headers={"Authorization": f"Bearer {meili.key}"}, timeout=10) as w:
            while not stop.is_set():
                try:
                    s = w.post(f"/indexes/{meili.posters}/search", json={"q": ""})
                    f = w.post(f"/indexes/{meili.posters}/documents/fetch", json={"limit": 3})
                    if s.status_code != 200 or f.status_code != 200:
                        errors.append(f"{s.status_code} {f.status_code}: {s.text[:200]}")
                    elif not s.json()["hits"] or not f.json()["results"]:
                        errors.append("empty result")
                    else:
                        seen.append(s.json()["estimatedTotalHits"])
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    if meili.server is not None:
        meili.server.task_delay = 0.05  # a restore that takes a moment, so the watcher sees it
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        time.sleep(0.2)
        out = ok(p, "restore", "search", "latest", "--index", meili.posters, "--replace")
        time.sleep(0.2)
    finally:
        stop.set()
        watcher.join()
    assert errors == []
    assert 5 in seen and len(POSTERS) in seen and seen.index(len(POSTERS)) > seen.index(5)
    assert f"restored index {meili.posters} → {meili.posters}: {len(POSTERS)} documents" in out
    assert index_state(c, meili.posters) == original  # documents, _vectors, nested fields, settings, key
    assert not [u for u in index_uids(c) if "__posterity_" in u]


def test_restore_as_new_name_and_refusals(tmp_path: Path, meili: Meili) -> None:
    populate(meili)
    c = meili.client()
    p = make(tmp_path, meili)
    backup(p)
    wait(c, c.post(f"/indexes/{meili.posters}/documents", json=[{"id": 999, "title": "added after the backup"}]))
    live = index_state(c, meili.posters)

    restored = f"{meili.prefix}posters_restored"
    ok(p, "restore", "search", "latest", "--index", meili.posters, "--as", restored)
    copy = index_state(c, restored)
    assert copy["documents"] == sorted(POSTERS, key=lambda d: str(d["id"]))
    assert copy["settings"] == live["settings"] and copy["primaryKey"] == "id"
    assert index_state(c, meili.posters) == live  # the live index was not touched

    # Existing targets are refused without --replace: exit 9, nothing changed.
    for args in (["--as", restored], []):
        proc = run(p, "restore", "search", "latest", "--index", meili.posters, *args)
        fails(proc, 9, "already exists", "--replace")
    assert index_state(c, meili.posters) == live
    fails(run(p, "restore", "search", "latest", "--index", "nope", "--as", "x"), 2, "holds no index 'nope'")
    fails(run(p, "restore", "search", "latest"), 2, "--index NAME")

    # --all --replace restores every index in one swap.
    wait(c, c.delete(f"/indexes/{meili.authors}"))
    out = ok(p, "--json", "restore", "search", "latest", "--all", "--replace")
    result = json.loads(out)
    assert {r["target"]: r["created"] for r in result["indexes"]} == {meili.posters: False, meili.authors: True}
    assert index_state(c, meili.posters)["documents"] == sorted(POSTERS, key=lambda d: str(d["id"]))
    authors = index_state(c, meili.authors)
    assert authors["documents"] == AUTHORS and authors["primaryKey"] == "sku"
    # The embedder's apiKey is hidden by the API, so the export cannot hold it: said, not faked.
    assert "apiKey" not in authors["settings"]["embedders"]["remote"]
    assert any("apiKey" in w for w in result["warnings"])


@on_latest
def test_failed_batch_mid_restore_leaves_live_index_untouched(tmp_path: Path, meili: Meili) -> None:
    server = meili.test_server("failure injection (fail_next)")
    populate(meili)
    c = meili.client()
    p = make(tmp_path, meili)
    backup(p)
    wait(c, c.post(f"/indexes/{meili.posters}/documents/delete-batch", json=[1, 2, 3]))
    before = index_state(c, meili.posters)

    server.fail_next("documentAdditionOrUpdate", code="io_error", message="disk on fire")
    proc = run(p, "restore", "search", "latest", "--index", meili.posters, "--replace")
    fails(proc, 10, "documentAdditionOrUpdate", "disk on fire", "Nothing was swapped", "was deleted")
    assert index_state(c, meili.posters) == before
    assert index_uids(c) == sorted([meili.authors, meili.posters])


# --------------------------------------------------------------------------- dump and snapshot


def test_dump_backup_round_trips_whole_and_per_index(tmp_path: Path, meili: Meili) -> None:
    if meili.dump_dir is None:
        pytest.skip("set POSTERITY_TEST_MEILISEARCH_DUMP_DIR to the real server's --dump-dir")
    key = populate(meili)
    c = meili.client()
    originals = {uid: index_state(c, uid) for uid in (meili.posters, meili.authors)}
    p = make(tmp_path, meili, modes=["dump"], dump_dir=str(meili.dump_dir))
    manifest = backup(p)
    dump = next(a for a in manifest["artifacts"] if a["kind"] == "meilisearch-dump")
    assert dump["name"] == f"{dump['facts']['dump_uid']}.dump"
    assert not (meili.dump_dir / dump["name"]).exists()  # stored, then deleted locally
    assert manifest["facts"]["dump"]["local_file_deleted"] is True

    # Per index, straight out of the dump stream, into the running server.
    wait(c, c.delete(f"/indexes/{meili.posters}"))
    out = ok(p, "restore", "search", "latest", "--index", meili.posters)
    assert "created" in out
    assert index_state(c, meili.posters) == originals[meili.posters]
    wait(c, c.patch(f"/indexes/{meili.authors}/settings", json={"embedders": {"remote": None}}))
    ok(p, "restore", "search", "latest", "--index", meili.posters, "--index", meili.authors, "--replace")
    for uid, state in originals.items():
        assert index_state(c, uid) == state  # dumps hold embedder secrets, so everything comes back

    # Meilisearch writes a dump's members in the order its folder is walked, which is not fixed:
    # the same restore from a dump whose documents come before their metadata and settings.
    reordered = commit_reordered_dump(p, manifest, meili.posters)
    wait(c, c.delete(f"/indexes/{meili.authors}"))
    wait(c, c.post(f"/indexes/{meili.posters}/documents/delete-batch", json=[1, 2]))
    every = ["--all"] if meili.server else ["--index", meili.posters, "--index", meili.authors]
    ok(p, "restore", "search", reordered, *every, "--replace")
    for uid, state in originals.items():
        assert index_state(c, uid) == state

    # The whole dump to a file, imported by a fresh server.
    meili.test_server("a second server importing the dump")
    path = tmp_path / "restore.dump"
    out = ok(p, "restore", "search", "latest", "--dump-to", str(path))
    assert "--import-dump" in out and str(path) in out
    assert meili.server is not None
    with MeiliTestServer(master_key=MASTER, data_dir=tmp_path / "fresh.ms", import_dump=path,
                         version=meili.server.version) as fresh:
        f = meili.client(fresh.url)
        for uid, state in originals.items():
            assert index_state(f, uid) == state
        assert meili.client(fresh.url, key["key"]).post(f"/indexes/{meili.posters}/search", json={}).status_code == 200


def commit_reordered_dump(p: Project, manifest: dict[str, Any], uid: str) -> str:
    """A copy of a dump backup whose tar lists every member in reverse order."""
    ctx = context(p)
    m = ctx.repo.find(manifest["id"], "search")
    art = m.artifacts_of_kind("meilisearch-dump")[0]
    raw = io.BytesIO()
    ctx.repo.read_artifact(art, raw, ctx.identities())
    with tarfile.open(fileobj=io.BytesIO(raw.getvalue()), mode="r:gz") as src:
        members = [(info, src.extractfile(info).read() if info.isfile() else None)  # type: ignore[union-attr]
                   for info in src.getmembers()]
    names = [info.name.removeprefix("./") for info, _ in reversed(members)]
    assert names.index(f"indexes/{uid}/documents.jsonl") < names.index(f"indexes/{uid}/metadata.json")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as dst:
        for info, data in reversed(members):
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    bid = new_backup_id()
    key = payload_key("search", bid, art.name)
    size, sha, raw_size = ctx.repo.write_payload(key, io.BytesIO(out.getvalue()), ctx.stages)
    record = dataclasses.replace(art, key=key, size=size, sha256=sha, raw_size=raw_size)
    ctx.repo.commit(dataclasses.replace(m, id=bid, artifacts=[record], key=""))
    return bid


def test_snapshot_backup_round_trips_and_refuses_other_versions(tmp_path: Path, meili: Meili) -> None:
    if meili.snapshot_dir is None:
        pytest.skip("set POSTERITY_TEST_MEILISEARCH_SNAPSHOT_DIR to the real server's --snapshot-dir")
    key = populate(meili)
    c = meili.client()
    originals = {uid: index_state(c, uid) for uid in (meili.posters, meili.authors)}
    p = make(tmp_path, meili, modes=["snapshot", "export"], snapshot_dir=str(meili.snapshot_dir))
    manifest = backup(p)
    snap = next(a for a in manifest["artifacts"] if a["kind"] == "meilisearch-snapshot")
    assert snap["raw_size"] == (meili.snapshot_dir / snap["name"]).stat().st_size
    assert snap["facts"]["index_counts"][meili.posters] == len(POSTERS) and snap["facts"]["counts_exact"]

    server = meili.test_server("a second server importing the snapshot")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = ok(p, "restore", "search", "latest", "--snapshot-to", str(out_dir))
    path = out_dir / snap["name"]
    assert path.read_bytes() == (meili.snapshot_dir / snap["name"]).read_bytes()
    assert f"--import-snapshot {path}" in out and "/health" in out and "--check-counts" in out
    fails(run(p, "restore", "search", "latest", "--snapshot-to", str(path)), 9, "already exists")
    with MeiliTestServer(master_key=MASTER, data_dir=tmp_path / "fresh.ms", import_snapshot=path,
                         version=server.version) as fresh:
        f = meili.client(fresh.url)
        for uid, state in originals.items():
            assert index_state(f, uid) == state
        assert meili.client(fresh.url, key["key"]).post(f"/indexes/{meili.posters}/search", json={}).status_code == 200

    ok(p, "restore", "search", "latest", "--check-counts")
    wait(c, c.delete(f"/indexes/{meili.posters}/documents/1"))
    fails(run(p, "restore", "search", "latest", "--check-counts"), 10, "differ", meili.posters)

    with MeiliTestServer(master_key=MASTER, data_dir=tmp_path / "v113.ms", version="1.13.0") as newer:
        p.sources["search"]["url"] = newer.url
        p.write_config()
        fails(run(p, "restore", "search", "latest", "--snapshot-to", str(tmp_path / "other.snapshot")), 9,
              f"Meilisearch {server.version}", "runs 1.13.0", "same version")
        assert not (tmp_path / "other.snapshot").exists()


@on_latest
def test_restart_command_imports_and_checks_counts(tmp_path: Path, meili: Meili) -> None:
    meili.test_server("a restart_command that cannot touch a real service")
    populate(meili)
    marker = tmp_path / "restart.txt"
    script = tmp_path / "restart.py"
    script.write_text("import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))\n")
    cmd = f"{sys.executable} {script} {marker} {{flag}} {{path}}"
    p = make(tmp_path, meili, modes=["dump"], dump_dir=str(meili.dump_dir), restart_command=cmd)
    backup(p)
    path = tmp_path / "x.dump"
    out = ok(p, "restore", "search", "latest", "--dump-to", str(path))
    assert marker.read_text() == f"--import-dump {path}"
    assert "ran restart_command" in out and "available" in out and "next steps" not in out


# --------------------------------------------------------------------------- errors


@on_latest
def test_backup_errors_are_clear_and_commit_nothing(tmp_path: Path, meili: Meili) -> None:
    server = meili.test_server("failure injection, stalls and a dead port")
    populate(meili)
    c = meili.client()
    p = make(tmp_path, meili, modes=["dump", "export"], dump_dir=str(meili.dump_dir))

    fails(run(p, "backup", "search", env={"TEST_MEILI_KEY": "wrong"}), 5, "refused the API key", "api_key")
    del p.sources["search"]["api_key"]
    p.write_config()
    fails(run(p, "backup", "search"), 5, "wants an API key")

    p.sources["search"].update(api_key="${TEST_MEILI_KEY}", url="http://127.0.0.1:9")
    p.write_config()
    fails(run(p, "backup", "search"), 5, "Cannot reach Meilisearch at http://127.0.0.1:9")

    p.sources["search"]["url"] = meili.url
    p.write_config()
    server.fail_next("dumpCreation", code="no_space_left_on_device", message="No space left")
    text = fails(run(p, "backup", "search"), 5, "(dumpCreation) failed", "No space left")
    failed_uid = c.get("/tasks", params={"types": "dumpCreation"}).json()["results"][0]["uid"]
    assert f"task {failed_uid} " in text

    with server.stalled("dumpCreation"):
        p.sources["search"]["task_timeout"] = 1
        p.write_config()
        fails(run(p, "backup", "search"), 5, "still processing after 1 s", "task_timeout")
    p.sources["search"].update(task_timeout=20, modes=["snapshot"], snapshot_dir=str(tmp_path / "nope"))
    p.write_config()
    snapshots = c.get("/tasks", params={"types": "snapshotCreation"}).json()["total"]
    fails(run(p, "backup", "search"), 5, "does not exist", "snapshot_dir")
    assert c.get("/tasks", params={"types": "snapshotCreation"}).json()["total"] == snapshots

    assert ok(p, "list").strip() == "no backups yet"
    assert not [f for f in (tmp_path / "repo" / "backups").rglob("*") if f.is_file()]


def _wrap_fetch(server: MeiliTestServer, after) -> None:
    """Run ``after(request, response)`` inside the server after each /documents/fetch."""
    for i, (method, pattern, handler, action) in enumerate(server.api.routes):
        if method == "POST" and pattern.pattern.startswith("/indexes/") and "documents/fetch" in pattern.pattern:
            def wrapped(req, handler=handler):
                response = handler(req)
                after(req, response)
                return response
            server.api.routes[i] = (method, pattern, wrapped, action)
            return
    raise AssertionError("no fetch route")


@on_latest
def test_export_fails_when_the_index_changes_under_it(tmp_path: Path, meili: Meili) -> None:
    server = meili.test_server("changes injected between two pages")
    populate(meili)
    c = meili.client()
    p = make(tmp_path, meili)

    # A document added after the last page was read: count mismatch.
    def add_after_last_page(req, response) -> None:
        body = response[1]
        if req.args["uid"] == meili.posters and len(body["results"]) < body["limit"]:
            server.store.indexes[meili.posters].documents["late"] = {"id": "late"}

    routes = list(server.api.routes)
    _wrap_fetch(server, add_after_last_page)
    fails(run(p, "backup", "search"), 5, f"read {len(POSTERS)} documents", f"holds {len(POSTERS) + 1}")
    assert ok(p, "list").strip() == "no backups yet"

    # A replacement that lands mid-export keeps the count but changes the data.
    server.api.routes = routes
    server.store.indexes[meili.posters].documents.pop("late")
    server.stall("documentAdditionOrUpdate")
    pending = c.post(f"/indexes/{meili.posters}/documents", json=[{"id": 1, "title": "changed"}]).json()["taskUid"]
    released: list[bool] = []

    def land_task_mid_export(req, response) -> None:
        if req.args["uid"] == meili.posters and not released:
            released.append(True)
            server.unstall()
            while server.store.tasks[pending]["status"] != "succeeded":
                server.queue.cond.wait(0.05)

    _wrap_fetch(server, land_task_mid_export)
    fails(run(p, "backup", "search"), 5, "changed while it was read")
    assert ok(p, "list").strip() == "no backups yet"
