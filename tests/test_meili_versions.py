"""Backups and restores against each emulated Meilisearch version (tests/meili/versions.py).

The three breakers of issue #13, each proved on every version of the matrix:
- a snapshot is named after --db-path's last component (``data.snapshot``, not ``data.ms.snapshot``);
- a dump from ≥1.15.1 (``chat``) and ≥1.39 (``foreignKeys``) restores per index;
- an export works where ``retrieveVectors`` is unknown (≤1.8) or gated (1.9–1.12).
Plus newer → older export restores, ``GET /tasks`` without ``total`` and pre-1.5 snapshots.

These need the in-repo server's version switch, so they skip when a real server is configured
(tests/test_meilisearch.py runs against it instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.meili import MeiliTestServer
from tests.meili.versions import MATRIX, Behaviour
from tests.test_meilisearch import MASTER, REAL, Meili, backup, fails, make, ok, run, wait

from posterity.sources.meilisearch.client import MeiliClient
from posterity.sources.meilisearch.settings_restore import apply_index_settings

pytestmark = pytest.mark.skipif(REAL, reason="needs the in-repo test server's version emulation")

DOCS = [
    {"id": i, "title": f"Poster {i}", "year": 2000 + i % 5, "meta": {"tags": ["ml", f"t{i % 3}"]},
     "_vectors": {"default": {"embeddings": [[i / 10, 0.5, -1.0]], "regenerate": False}}}
    for i in range(1, 13)
]
SETTINGS = {"filterableAttributes": ["year"], "stopWords": ["the"], "synonyms": {"poster": ["placard"]}}


def server(tmp_path: Path, version: str, db: str = "data.ms", name: str = "meili") -> MeiliTestServer:
    base = tmp_path / name
    return MeiliTestServer(master_key=MASTER, data_dir=base / db, dump_dir=base / "dumps",
                           snapshot_dir=base / "snapshots", version=version)


def as_meili(s: MeiliTestServer) -> Meili:
    return Meili(s.url, MASTER, "", s.snapshot_dir, s.dump_dir, s)


def load(m: Meili, settings: dict[str, Any] | None = None, uid: str = "posters") -> httpx.Client:
    c = m.client()
    wait(c, c.post("/indexes", json={"uid": uid, "primaryKey": "id"}))
    wait(c, c.patch(f"/indexes/{uid}/settings", json=settings or SETTINGS))
    wait(c, c.post(f"/indexes/{uid}/documents", json=DOCS))
    return c


def documents(c: httpx.Client, uid: str, version: str) -> list[dict[str, Any]]:
    """Every document with its ``_vectors``, asked the way ``version`` allows."""
    b = Behaviour(version)
    features = c.get("/experimental-features").json()
    body: dict[str, Any] = {"limit": 1000}
    if b.knows_retrieve_vectors and not (b.vector_store_gated and not features.get("vectorStore")):
        body["retrieveVectors"] = True
    r = c.post(f"/indexes/{uid}/documents/fetch", json=body)
    assert r.status_code == 200, r.text
    return sorted(r.json()["results"], key=lambda d: d["id"])


@pytest.fixture(params=MATRIX)
def version(request: pytest.FixtureRequest) -> str:
    return request.param


# --------------------------------------------------------------------------- breaker 1: snapshot names


@pytest.mark.parametrize("db", ["data", "data.ms", "search-db"])
def test_snapshot_is_found_whatever_db_path_is_called(tmp_path: Path, version: str, db: str) -> None:
    with server(tmp_path, version, db) as s:
        m = as_meili(s)
        c = load(m)
        p = make(tmp_path, m, modes=["snapshot"], snapshot_dir=str(s.snapshot_dir))
        manifest = backup(p)
        snap = next(a for a in manifest["artifacts"] if a["kind"] == "meilisearch-snapshot")
        assert snap["name"] == f"{db}.snapshot" == s.snapshot_path.name
        assert snap["raw_size"] == s.snapshot_path.stat().st_size
        out = tmp_path / "out"
        out.mkdir()
        ok(p, "restore", "search", "latest", "--snapshot-to", str(out))
        assert (out / snap["name"]).read_bytes() == s.snapshot_path.read_bytes()
        original = documents(c, "posters", version)
    with MeiliTestServer(master_key=MASTER, data_dir=tmp_path / "fresh" / db, version=version,
                         import_snapshot=out / snap["name"]) as fresh:
        assert documents(as_meili(fresh).client(), "posters", version) == original == sorted(
            DOCS, key=lambda d: d["id"])


def test_snapshot_naming_is_explicit_with_db_path_and_refuses_a_stale_file(tmp_path: Path) -> None:
    with server(tmp_path, "1.39.0", "data") as s:
        m = as_meili(s)
        load(m)
        stale = s.snapshot_dir / "data.ms.snapshot"  # an old file from another layout
        stale.write_bytes(b"old")
        p = make(tmp_path, m, modes=["snapshot"], snapshot_dir=str(s.snapshot_dir), db_path="/srv/meili/data")
        assert next(a for a in backup(p)["artifacts"] if a["kind"] == "meilisearch-snapshot")["name"] == "data.snapshot"
        # db_path naming another database: its file was not written by this task, nothing committed.
        p.sources["search"]["db_path"] = "/srv/meili/data.ms"
        p.write_config()
        fails(run(p, "backup", "search"), 5, "was not written by snapshot task")
        assert len(list((tmp_path / "repo").rglob("manifest.json"))) == 1  # the first backup only


def test_snapshot_mode_before_1_5_says_so(tmp_path: Path) -> None:
    with server(tmp_path, "1.4.2") as s:
        m = as_meili(s)
        load(m)
        p = make(tmp_path, m, modes=["snapshot"], snapshot_dir=str(s.snapshot_dir))
        fails(run(p, "backup", "search"), 5, "Meilisearch 1.4.2", "POST /snapshots exists from v1.5.0", "mode dump")
        assert m.client().post("/snapshots").status_code == 404  # the route really is absent


# --------------------------------------------------------------------------- breaker 2: dump settings


def test_dump_restores_per_index_on_every_version(tmp_path: Path, version: str) -> None:
    with server(tmp_path, version) as s:
        m = as_meili(s)
        c = load(m)
        before = {"settings": c.get("/indexes/posters/settings").json(), "docs": documents(c, "posters", version)}
        p = make(tmp_path, m, modes=["dump"], dump_dir=str(s.dump_dir))
        backup(p)
        wait(c, c.delete("/indexes/posters"))
        out = ok(p, "--json", "restore", "search", "latest", "--index", "posters")
        assert c.get("/indexes/posters/settings").json() == before["settings"]
        assert documents(c, "posters", version) == before["docs"]
        assert '"warnings": []' in out  # untouched chat/foreignKeys are not worth a warning


def test_dump_that_used_chat_restores_and_says_how_to_keep_it(tmp_path: Path) -> None:
    with server(tmp_path, "1.39.0") as s:
        m = as_meili(s)
        c = m.client()
        assert c.patch("/experimental-features", json={"chatCompletions": True}).status_code == 200
        load(m, {**SETTINGS, "chat": {"description": "Scientific posters"}})
        p = make(tmp_path, m, modes=["dump"], dump_dir=str(s.dump_dir))
        backup(p)
        c.patch("/experimental-features", json={"chatCompletions": False})
        out = ok(p, "--json", "restore", "search", "latest", "--index", "posters", "--as", "copy")
        assert "chatCompletions" in out and "Scientific posters" in out and "left out" in out
        assert documents(c, "copy", "1.39.0") == sorted(DOCS, key=lambda d: d["id"])
        c.patch("/experimental-features", json={"chatCompletions": True})
        out = ok(p, "--json", "restore", "search", "latest", "--index", "posters", "--as", "copy", "--replace")
        assert '"warnings": []' in out
        assert c.get("/indexes/copy/settings").json()["chat"]["description"] == "Scientific posters"


# --------------------------------------------------------------------------- breaker 3: vectors


def test_export_round_trips_without_the_vector_store(tmp_path: Path, version: str) -> None:
    with server(tmp_path, version) as s:
        m = as_meili(s)
        c = load(m)
        assert c.get("/experimental-features").json().get("vectorStore") in (None, False)
        original = documents(c, "posters", version)
        assert all("_vectors" in d for d in original)
        p = make(tmp_path, m)
        backup(p)
        wait(c, c.delete("/indexes/posters"))
        ok(p, "restore", "search", "latest", "--index", "posters")
        assert documents(c, "posters", version) == original


def test_export_before_the_fetch_route_pages_with_get(tmp_path: Path) -> None:
    # v1.1 has no POST …/documents/fetch and rejects `retrieveVectors` on GET …/documents.
    with server(tmp_path, "1.1.0") as s:
        m = as_meili(s)
        c = load(m)
        assert c.post("/indexes/posters/documents/fetch", json={}).status_code in (404, 405)
        assert c.get("/indexes/posters/documents", params={"retrieveVectors": "true"}).status_code == 400
        p = make(tmp_path, m)
        manifest = backup(p)
        assert manifest["facts"]["pending_tasks_at_start"] == 0
        wait(c, c.delete("/indexes/posters"))
        ok(p, "restore", "search", "latest", "--index", "posters")
        got = c.get("/indexes/posters/documents", params={"limit": 100}).json()["results"]
        assert sorted(got, key=lambda d: d["id"]) == sorted(DOCS, key=lambda d: d["id"])


# --------------------------------------------------------------------------- across versions


@pytest.mark.parametrize("older", ["1.8.0", "1.12.0"])
def test_export_from_current_restores_into_older_and_reports_what_was_dropped(tmp_path: Path, older: str) -> None:
    newer_settings = {**SETTINGS, "typoTolerance": {"disableOnNumbers": True}, "facetSearch": False,
                      "localizedAttributes": [{"attributePatterns": ["title"], "locales": ["eng"]}]}
    with server(tmp_path, "1.39.0", name="new") as new:
        m = as_meili(new)
        load(m, newer_settings)
        p = make(tmp_path, m)
        backup(p)
    with server(tmp_path, older, name="old") as old:
        p.sources["search"]["url"] = old.url
        p.write_config()
        out = ok(p, "--json", "restore", "search", "latest", "--index", "posters")
        c = as_meili(old).client()
        assert documents(c, "posters", older) == sorted(DOCS, key=lambda d: d["id"])
        got = c.get("/indexes/posters/settings").json()
        assert got["filterableAttributes"] == ["year"] and got["synonyms"] == SETTINGS["synonyms"]
        assert got["rankingRules"] == ["words", "typo", "proximity", "attribute", "sort", "exactness"]
        assert "disableOnNumbers" in out and "attributeRank" in out
        assert ("localizedAttributes" in out) == ("facetSearch" in out) == (older == "1.8.0")


def test_a_setting_unknown_to_posterity_and_refused_by_the_target_is_left_out(tmp_path: Path) -> None:
    with server(tmp_path, "1.39.0") as s, MeiliClient(s.url, MASTER) as client:
        client.wait_task(client.enqueue("POST", "/indexes", json={"uid": "x"}))
        warnings: list[str] = []
        apply_index_settings(client, "x", {"stopWords": ["the"], "futureSetting": {"on": True}}, "x", warnings)
        assert client.get("/indexes/x/settings")["stopWords"] == ["the"]
        assert len(warnings) == 1 and "`futureSetting` was left out" in warnings[0] and "bad_request" in warnings[0]


def restricted_key(c: httpx.Client) -> str:
    """An admin-like key without `experimental.get` (nor keys.get): the features are unknown."""
    actions = ["search", "documents.*", "indexes.*", "settings.*", "tasks.*", "stats.get", "version",
               "dumps.create", "snapshots.create"]
    r = c.post("/keys", json={"actions": actions, "indexes": ["*"], "expiresAt": None})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.mark.parametrize(("v", "vector_store"), [("1.12.0", False), ("1.12.0", True), ("1.39.0", None)])
def test_export_and_dump_restore_with_a_key_that_cannot_read_the_features(
    tmp_path: Path, v: str, vector_store: bool | None
) -> None:
    with server(tmp_path, v) as s:
        m = as_meili(s)
        if vector_store is not None:
            assert m.client().patch("/experimental-features", json={"vectorStore": vector_store}).status_code == 200
        c = load(m)
        original = documents(c, "posters", v)
        m.key = restricted_key(c)
        assert m.client().get("/experimental-features").status_code == 403
        p = make(tmp_path, m, modes=["dump"], dump_dir=str(s.dump_dir))
        for modes in (["dump"], ["export"]):
            p.sources["search"]["modes"] = modes
            p.write_config()
            backup(p)
            wait(c, c.delete("/indexes/posters"))
            out = ok(p, "--json", "restore", "search", "latest", "--index", "posters")
            assert f'"from": "{modes[0]}"' in out and '"warnings": []' in out
            assert documents(c, "posters", v) == original and all("_vectors" in d for d in original)


# --------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("old_version", ["1.2.0", "1.39.0"])
def test_pending_tasks_are_counted_with_or_without_total(tmp_path: Path, old_version: str) -> None:
    with server(tmp_path, old_version) as s, MeiliClient(s.url, MASTER) as client, s.stalled():
        for i in range(3):
            client.enqueue("POST", "/indexes", json={"uid": f"i{i}"})
        assert ("total" in client.get("/tasks")) == (old_version != "1.2.0")
        assert client.pending_tasks() == 3

