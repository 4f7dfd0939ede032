"""The in-repo Meilisearch test server follows Meilisearch's documented API and file formats."""

from __future__ import annotations

import hashlib
import hmac
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.meili import MeiliStartupError, MeiliTestServer

MASTER = "masterKey-0123456789"
# The routes as the newest emulated version has them; version differences are proved in
# tests/test_meili_versions.py and by tests/test_meilisearch.py's matrix.
VERSION = "1.39.0"

DOCS: list[dict[str, Any]] = [
    {
        "id": 1,
        "title": "Carol",
        "genre": "drama",
        "meta": {"cast": ["Cate", "Rooney"], "ratings": {"imdb": 7.2, "votes": 120000}},
        "tags": [],
        "_vectors": {"default": {"embeddings": [[0.1, 0.2, 0.3]], "regenerate": False}},
    },
    {
        "id": "two-2",
        "title": "Héloïse — «portrait»",
        "genre": "romance",
        "meta": {"cast": None, "nested": [{"a": [1, [2, 3]]}, {"b": {"c": True}}]},
        "_vectors": {"default": [0.5, 0.25, -1.0]},
    },
    {"id": 3, "title": "Alien", "genre": "scifi", "score": 1.5e-10, "empty": {}},
]


@pytest.fixture
def meili(tmp_path: Path) -> Iterator[MeiliTestServer]:
    server = MeiliTestServer(
        master_key=MASTER,
        data_dir=tmp_path / "data.ms",
        dump_dir=tmp_path / "dumps",
        snapshot_dir=tmp_path / "snapshots",
        version=VERSION,
    )
    with server:
        yield server


def client(server: MeiliTestServer, key: str | None = MASTER) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


def wait(c: httpx.Client, response: httpx.Response, status: str = "succeeded") -> dict[str, Any]:
    """Poll GET /tasks/{uid} like a real client until the task is finished."""
    assert response.status_code == 202, response.text
    uid = response.json()["taskUid"]
    for _ in range(500):
        task = c.get(f"/tasks/{uid}").json()
        if task["status"] in ("succeeded", "failed", "canceled"):
            assert task["status"] == status, task
            return task
        time.sleep(0.01)
    raise AssertionError(f"task {uid} did not finish")


def until_processing(c: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    uid = response.json()["taskUid"]
    for _ in range(500):
        task = c.get(f"/tasks/{uid}").json()
        if task["status"] == "processing":
            return task
        time.sleep(0.01)
    raise AssertionError(f"task {uid} never started")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "code", "type", "link"}
    assert body["code"] == code
    assert body["link"] == f"https://docs.meilisearch.com/errors#{code}"
    return body


def load(c: httpx.Client, uid: str = "movies", docs: list[dict[str, Any]] = DOCS) -> None:
    wait(c, c.post(f"/indexes/{uid}/documents", json=docs))


# --------------------------------------------------------------------------- auth


def test_auth_errors_and_api_keys(meili: MeiliTestServer) -> None:
    assert httpx.get(f"{meili.url}/health").json() == {"status": "available"}
    body = assert_error(httpx.get(f"{meili.url}/indexes"), 401, "missing_authorization_header")
    assert body["type"] == "auth"
    assert_error(client(meili, "wrong").get("/indexes"), 403, "invalid_api_key")

    master = client(meili)
    load(master)
    keys = master.get("/keys").json()
    assert keys["total"] == 2 and {k["name"] for k in keys["results"]} == {
        "Default Search API Key",
        "Default Admin API Key",
    }
    for key in keys["results"]:
        expected = hmac.new(MASTER.encode(), key["uid"].encode(), hashlib.sha256).hexdigest()
        assert key["key"] == expected
    search = client(meili, meili.search_key)
    assert search.post("/indexes/movies/search", json={"q": "alien"}).json()["hits"][0]["id"] == 3
    assert_error(search.get("/indexes"), 403, "invalid_api_key")
    assert client(meili, meili.admin_key).get("/indexes").json()["total"] == 1

    created = master.post(
        "/keys",
        json={"actions": ["documents.*", "tasks.*"], "indexes": ["mov*"], "expiresAt": None},
    )
    assert created.status_code == 201
    scoped = client(meili, created.json()["key"])
    wait(scoped, scoped.post("/indexes/movies/documents", json=[{"id": 9}]))
    assert scoped.get("/indexes/movies/documents/9").json() == {"id": 9}
    assert_error(scoped.post("/indexes/books/documents", json=[{"id": 1}]), 403, "invalid_api_key")
    assert_error(scoped.get("/indexes/movies/settings"), 403, "invalid_api_key")
    assert_error(
        master.post("/keys", json={"actions": ["nope"], "indexes": ["*"], "expiresAt": None}),
        400,
        "invalid_api_key_actions",
    )
    assert master.delete(f"/keys/{created.json()['uid']}").status_code == 204
    assert_error(scoped.get("/indexes/movies/documents"), 403, "invalid_api_key")
    assert_error(master.get("/indexes/nope"), 404, "index_not_found")


# --------------------------------------------------------------------------- tasks


def test_task_lifecycle_and_listing(meili: MeiliTestServer) -> None:
    c = client(meili)
    with meili.stalled():
        first = c.post("/indexes/movies/documents", json=DOCS[:1])
        summary = first.json()
        assert first.status_code == 202
        assert set(summary) == {"taskUid", "indexUid", "status", "type", "enqueuedAt"}
        assert summary["status"] == "enqueued" and summary["type"] == "documentAdditionOrUpdate"
        second = c.post("/indexes/books/documents", json=[{"book_id": 1}])
        task = until_processing(c, first)
        assert task["startedAt"] and task["finishedAt"] is None and task["batchUid"] == 0
        assert c.get(f"/tasks/{second.json()['taskUid']}").json()["status"] == "enqueued"
        assert c.get("/indexes/movies/stats").status_code == 404  # not created yet
    done = wait(c, first)
    assert done["details"] == {"receivedDocuments": 1, "indexedDocuments": 1}
    assert done["duration"].startswith("PT") and done["duration"].endswith("S")
    assert done["error"] is None and done["finishedAt"] >= done["startedAt"]
    wait(c, second)
    wait(c, c.post("/indexes", json={"uid": "empty", "primaryKey": "pk"}))
    failed = wait(c, c.post("/indexes", json={"uid": "empty"}), "failed")
    assert failed["error"]["code"] == "index_already_exists"

    page = c.get("/tasks", params={"limit": 2}).json()
    assert [t["uid"] for t in page["results"]] == [3, 2]
    assert page["total"] == 4 and page["next"] == 1 and page["from"] == 3
    rest = c.get("/tasks", params={"limit": 2, "from": page["next"]}).json()
    assert [t["uid"] for t in rest["results"]] == [1, 0] and rest["next"] is None
    only = c.get("/tasks", params={"statuses": "failed", "types": "indexCreation"}).json()
    assert [t["uid"] for t in only["results"]] == [3]
    assert c.get("/tasks", params={"indexUids": "books"}).json()["total"] == 1
    assert_error(c.get("/tasks", params={"statuses": "bogus"}), 400, "invalid_task_statuses")
    assert_error(c.get("/tasks/999"), 404, "task_not_found")
    stats = c.get("/indexes/books/stats").json()
    assert stats == {
        "numberOfDocuments": 1,
        "isIndexing": False,
        "fieldDistribution": {"book_id": 1},
    }


def test_failure_injection_cancel_and_priority(meili: MeiliTestServer) -> None:
    c = client(meili)
    meili.fail_next("documentAdditionOrUpdate", code="io_error", message="disk on fire")
    failed = wait(c, c.post("/indexes/movies/documents", json=DOCS), "failed")
    assert failed["error"] == {
        "message": "disk on fire",
        "code": "io_error",
        "type": "system",
        "link": "https://docs.meilisearch.com/errors#io_error",
    }
    assert failed["details"] == {"receivedDocuments": 3, "indexedDocuments": 0}
    assert_error(c.get("/indexes/movies"), 404, "index_not_found")
    load(c)  # the injected failure was used once

    meili.fail_next("dumpCreation")
    assert wait(c, c.post("/dumps"), "failed")["error"]["code"] == "internal"
    assert list(meili.dump_dir.iterdir()) == []

    with meili.stalled("indexCreation"):
        blocker = c.post("/indexes", json={"uid": "blocker"})
        until_processing(c, blocker)
        docs = [c.post("/indexes/movies/documents", json=[{"id": i}]) for i in (10, 11)]
        snap = c.post("/snapshots")
        cancel = c.post("/tasks/cancel", params={"uids": str(docs[1].json()["taskUid"])})
    wait(c, blocker)
    canceled = wait(c, docs[1], "canceled")
    assert canceled["canceledBy"] == cancel.json()["taskUid"]
    assert wait(c, cancel)["details"]["canceledTasks"] == 1
    # Cancelation, then the snapshot, jump the queue ahead of the enqueued document task.
    order = [wait(c, r)["batchUid"] for r in (cancel, snap, docs[0])]
    assert order == sorted(order)
    assert_error(c.post("/tasks/cancel"), 400, "missing_task_filters")
    # A task stalled in "processing" can be canceled too.
    with meili.stalled("documentAdditionOrUpdate"):
        stuck = c.post("/indexes/movies/documents", json=[{"id": 12}])
        until_processing(c, stuck)
        wait(c, c.post("/tasks/cancel", params={"statuses": "processing,enqueued"}))
    wait(c, stuck, "canceled")
    assert c.get("/indexes/movies/documents/12").status_code == 404


# --------------------------------------------------------------------------- documents


def test_documents_round_trip(meili: MeiliTestServer) -> None:
    c = client(meili)
    load(c)
    assert c.get("/indexes/movies").json()["primaryKey"] == "id"
    with_vectors = c.get("/indexes/movies/documents", params={"retrieveVectors": "true"}).json()
    assert with_vectors == {"results": DOCS, "offset": 0, "limit": 20, "total": 3}
    plain = c.get("/indexes/movies/documents").json()["results"]
    assert plain == [{k: v for k, v in d.items() if k != "_vectors"} for d in DOCS]
    page = c.get("/indexes/movies/documents", params={"offset": 1, "limit": 1, "fields": "title"})
    assert page.json() == {
        "results": [{"title": DOCS[1]["title"]}],
        "offset": 1,
        "limit": 1,
        "total": 3,
    }
    one = c.get("/indexes/movies/documents/two-2", params={"retrieveVectors": "true"}).json()
    assert one == DOCS[1]

    assert_error(
        c.post("/indexes/movies/documents/fetch", json={"filter": "genre = drama"}),
        400,
        "invalid_document_filter",
    )
    wait(c, c.patch("/indexes/movies/settings", json={"filterableAttributes": ["genre"]}))
    fetched = c.post(
        "/indexes/movies/documents/fetch",
        json={"filter": "genre = 'romance'", "fields": ["id", "meta"], "retrieveVectors": True},
    ).json()
    assert fetched["total"] == 1
    assert fetched["results"] == [
        {"id": "two-2", "meta": DOCS[1]["meta"], "_vectors": DOCS[1]["_vectors"]}
    ]

    ndjson = "\n".join(json.dumps(d) for d in [{"id": 4, "title": "Dune"}, {"id": 1, "x": 1}])
    r = c.post(
        "/indexes/movies/documents",
        content=ndjson,
        headers={"Content-Type": "application/x-ndjson"},
    )
    wait(c, r)
    assert c.get("/indexes/movies/documents/1").json() == {"id": 1, "x": 1}  # replaced
    wait(c, c.put("/indexes/movies/documents", json=[{"id": 4, "year": 2021}]))
    assert c.get("/indexes/movies/documents/4").json() == {"id": 4, "title": "Dune", "year": 2021}
    hits = c.post("/indexes/movies/search", json={"q": "dune"}).json()
    assert [h["id"] for h in hits["hits"]] == [4] and hits["estimatedTotalHits"] == 1
    assert set(hits) >= {"hits", "query", "processingTimeMs", "limit", "offset"}

    wait(c, c.delete("/indexes/movies/documents/4"))
    assert_error(c.get("/indexes/movies/documents/4"), 404, "document_not_found")
    assert c.get("/indexes/movies/stats").json()["numberOfDocuments"] == 3

    no_pk = wait(c, c.post("/indexes/nopk/documents", json=[{"title": "x"}]), "failed")
    assert no_pk["error"]["code"] == "index_primary_key_no_candidate_found"
    assert_error(c.get("/indexes/nopk"), 404, "index_not_found")
    wait(
        c, c.post("/indexes/nopk/documents", params={"primaryKey": "title"}, json=[{"title": "x"}])
    )
    assert c.get("/indexes/nopk").json()["primaryKey"] == "title"
    assert_error(c.post("/indexes/movies/documents", content=b"[]"), 415, "missing_content_type")
    wait(c, c.delete("/indexes/movies/documents"))
    assert c.get("/indexes/movies/documents").json()["total"] == 0


# --------------------------------------------------------------------------- settings


def test_settings_patch_get_reset(meili: MeiliTestServer) -> None:
    c = client(meili)
    wait(c, c.post("/indexes", json={"uid": "movies"}))
    defaults = c.get("/indexes/movies/settings").json()
    assert defaults["rankingRules"] == [  # crates/milli/src/criterion.rs (v1.36.0+)
        "words",
        "typo",
        "proximity",
        "attributeRank",
        "sort",
        "wordPosition",
        "exactness",
    ]
    assert defaults["pagination"] == {"maxTotalHits": 1000}
    assert defaults["faceting"] == {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "alpha"}}
    assert defaults["typoTolerance"]["minWordSizeForTypos"] == {"oneTypo": 5, "twoTypos": 9}
    assert defaults["facetSearch"] is True and defaults["prefixSearch"] == "indexingTime"

    patch = {
        "searchableAttributes": ["title", "meta.cast"],
        "typoTolerance": {"minWordSizeForTypos": {"oneTypo": 4}},
        "pagination": {"maxTotalHits": 50},
        "embedders": {"default": {"source": "userProvided", "dimensions": 3}},
        "distinctAttribute": "title",
    }
    task = wait(c, c.patch("/indexes/movies/settings", json=patch))
    assert task["type"] == "settingsUpdate" and task["details"] == patch
    got = c.get("/indexes/movies/settings").json()
    assert got["searchableAttributes"] == ["title", "meta.cast"]
    assert got["typoTolerance"]["minWordSizeForTypos"] == {"oneTypo": 4, "twoTypos": 9}
    assert got["typoTolerance"]["enabled"] is True
    assert got["embedders"] == {"default": {"source": "userProvided", "dimensions": 3}}
    assert got["pagination"] == {"maxTotalHits": 50}

    wait(c, c.put("/indexes/movies/settings/synonyms", json={"film": ["movie"]}))
    assert c.get("/indexes/movies/settings/synonyms").json() == {"film": ["movie"]}
    wait(c, c.delete("/indexes/movies/settings/synonyms"))
    assert c.get("/indexes/movies/settings/synonyms").json() == {}
    assert_error(c.patch("/indexes/movies/settings", json={"nope": 1}), 400, "bad_request")
    assert_error(
        c.patch("/indexes/movies/settings", json={"rankingRules": "words"}),
        400,
        "invalid_settings_ranking_rules",
    )
    wait(c, c.delete("/indexes/movies/settings"))
    assert c.get("/indexes/movies/settings").json() == defaults
    assert_error(c.get("/indexes/ghost/settings"), 404, "index_not_found")


# --------------------------------------------------------------------------- swap


def test_swap_indexes(meili: MeiliTestServer) -> None:
    c = client(meili)
    load(c, "posters", DOCS[:1])
    load(c, "posters_tmp", DOCS[1:])
    wait(c, c.patch("/indexes/posters_tmp/settings", json={"stopWords": ["the"]}))
    task = wait(c, c.post("/swap-indexes", json=[{"indexes": ["posters", "posters_tmp"]}]))
    assert task["type"] == "indexSwap" and task["indexUid"] is None
    assert task["details"] == {"swaps": [{"indexes": ["posters", "posters_tmp"]}]}
    assert c.get("/indexes/posters/documents").json()["total"] == 2
    assert c.get("/indexes/posters_tmp/documents").json()["total"] == 1
    assert c.get("/indexes/posters/settings/stop-words").json() == ["the"]
    assert c.get("/indexes/posters_tmp/settings/stop-words").json() == []
    # Task history moved with the index.
    history = c.get("/tasks", params={"indexUids": "posters", "types": "settingsUpdate"})
    assert history.json()["total"] == 1

    failed = wait(c, c.post("/swap-indexes", json=[{"indexes": ["posters", "ghost"]}]), "failed")
    assert failed["error"]["code"] == "index_not_found"
    assert c.get("/indexes/posters/documents").json()["total"] == 2
    assert_error(
        c.post("/swap-indexes", json=[{"indexes": ["a", "b"]}, {"indexes": ["b", "c"]}]),
        400,
        "invalid_swap_duplicate_index_found",
    )


# --------------------------------------------------------------------------- dumps


def _populate(c: httpx.Client) -> dict[str, Any]:
    load(c)
    wait(c, c.patch("/indexes/movies/settings", json={"filterableAttributes": ["genre"]}))
    wait(c, c.post("/indexes", json={"uid": "empty", "primaryKey": "sku"}))
    key = c.post(
        "/keys",
        json={
            "name": "backup",
            "actions": ["search", "documents.get"],
            "indexes": ["movies"],
            "expiresAt": "2999-01-01T00:00:00Z",
        },
    )
    return key.json()


def test_dump_file_layout(meili: MeiliTestServer) -> None:
    c = client(meili)
    key = _populate(c)
    task = wait(c, c.post("/dumps"))
    dump_uid = task["details"]["dumpUid"]
    assert len(dump_uid) == 18 and dump_uid[8] == "-" and dump_uid.replace("-", "").isdigit()
    assert [p.name for p in meili.dump_dir.iterdir()] == [f"{dump_uid}.dump"]

    with tarfile.open(meili.dump_dir / f"{dump_uid}.dump", "r:gz") as tar:
        files = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    assert set(files) == {
        "metadata.json",
        "instance_uid.uuid",
        "keys.jsonl",
        "tasks/queue.jsonl",
        "batches/queue.jsonl",
        "indexes/movies/metadata.json",
        "indexes/movies/settings.json",
        "indexes/movies/documents.jsonl",
        "indexes/empty/metadata.json",
        "indexes/empty/settings.json",
        "indexes/empty/documents.jsonl",
        "experimental-features.json",
        "network.json",
    }
    metadata = json.loads(files["metadata.json"])
    assert metadata["dumpVersion"] == "V6" and metadata["dbVersion"] == VERSION
    assert "dumpDate" in metadata
    docs = [json.loads(line) for line in files["indexes/movies/documents.jsonl"].splitlines()]
    assert docs == DOCS  # nested fields and _vectors kept exactly
    index_meta = json.loads(files["indexes/empty/metadata.json"])
    assert set(index_meta) == {"uid", "primaryKey", "createdAt", "updatedAt"}
    assert index_meta["primaryKey"] == "sku"
    settings = json.loads(files["indexes/movies/settings.json"])
    assert settings["filterableAttributes"] == ["genre"]
    keys = [json.loads(line) for line in files["keys.jsonl"].splitlines()]
    assert key["uid"] in {k["uid"] for k in keys} and all("key" not in k for k in keys)
    tasks = [json.loads(line) for line in files["tasks/queue.jsonl"].splitlines()]
    assert [t["uid"] for t in tasks] == list(range(len(tasks)))
    assert tasks[-1]["status"] == "succeeded" and "dumpCreation" in tasks[-1]["type"]
    assert tasks[0]["type"]["documentImport"]["method"] == "ReplaceDocuments"
    assert json.loads(files["experimental-features.json"])["chatCompletions"] is False


def test_import_dump_into_fresh_server(meili: MeiliTestServer, tmp_path: Path) -> None:
    c = client(meili)
    key = _populate(c)
    dump = meili.dump_dir / (wait(c, c.post("/dumps"))["details"]["dumpUid"] + ".dump")

    fresh = MeiliTestServer(
        master_key=MASTER, data_dir=tmp_path / "new.ms", import_dump=dump, version=VERSION
    )
    with fresh:
        n = client(fresh)
        assert [i["uid"] for i in n.get("/indexes").json()["results"]] == ["empty", "movies"]
        got = n.get("/indexes/movies/documents", params={"retrieveVectors": "true"}).json()
        assert got["results"] == DOCS
        assert n.get("/indexes/movies/settings/filterable-attributes").json() == ["genre"]
        assert n.get("/indexes/empty").json()["primaryKey"] == "sku"
        # Same master key: the same key strings work on the restored instance.
        restored = client(fresh, key["key"])
        assert restored.get("/indexes/movies/documents").json()["total"] == 3
        assert n.get("/tasks").json()["total"] == c.get("/tasks").json()["total"]
        wait(n, n.post("/indexes/movies/documents", json=[{"id": 77}]))

    with pytest.raises(MeiliStartupError, match="already exists"):
        MeiliTestServer(master_key=MASTER, data_dir=tmp_path / "new.ms", import_dump=dump).start()
    with pytest.raises(MeiliStartupError, match="does not exist"):
        MeiliTestServer(data_dir=tmp_path / "x.ms", import_dump=tmp_path / "missing.dump").start()


# --------------------------------------------------------------------------- snapshots


def test_snapshot_import_restores_everything(meili: MeiliTestServer, tmp_path: Path) -> None:
    c = client(meili)
    key = _populate(c)
    wait(c, c.post("/snapshots"))
    first = meili.snapshot_path.read_bytes()
    wait(c, c.post("/indexes/movies/documents", json=[{"id": 5, "title": "Heat"}]))
    task = wait(c, c.post("/snapshots"))
    assert task["type"] == "snapshotCreation"
    assert [p.name for p in meili.snapshot_dir.iterdir()] == ["data.ms.snapshot"]
    assert meili.snapshot_path.read_bytes() != first  # overwritten, no rotation

    with MeiliTestServer(
        master_key=MASTER,
        data_dir=tmp_path / "restored.ms",
        import_snapshot=meili.snapshot_path,
        version=VERSION,
    ) as restored:
        r = client(restored)
        docs = r.get("/indexes/movies/documents", params={"retrieveVectors": "true"}).json()
        assert docs["total"] == 4 and docs["results"][:3] == DOCS
        assert r.get("/indexes/movies/settings").json() == c.get("/indexes/movies/settings").json()
        assert client(restored, key["key"]).get("/indexes/movies/documents").status_code == 200
        tasks = r.get("/tasks").json()
        assert tasks["results"][0]["type"] == "snapshotCreation"
        assert tasks["results"][0]["status"] == "succeeded"
        assert r.get("/tasks", params={"statuses": "enqueued,processing"}).json()["total"] == 0

    with pytest.raises(MeiliStartupError, match="incompatible"):
        MeiliTestServer(
            data_dir=tmp_path / "other.ms", version="1.38.0", import_snapshot=meili.snapshot_path
        ).start()
    with pytest.raises(MeiliStartupError, match="already exists"):
        MeiliTestServer(
            data_dir=tmp_path / "restored.ms", import_snapshot=meili.snapshot_path, version=VERSION
        ).start()


def test_restart_keeps_data(meili: MeiliTestServer) -> None:
    c = client(meili)
    key = _populate(c)
    meili.stall()
    pending = c.post("/indexes/movies/documents", json=[{"id": 8, "title": "Ran"}])
    until_processing(c, pending)
    restarted = meili.restart()  # the interrupted task is back in the saved queue
    try:
        r = client(restarted)
        assert wait(r, pending)["details"]["indexedDocuments"] == 1  # the queue survived
        assert r.get("/indexes/movies/documents").json()["total"] == 4
        assert client(restarted, key["key"]).get("/indexes/movies/documents/8").status_code == 200
        assert restarted.admin_key == meili.admin_key
    finally:
        restarted.close()
