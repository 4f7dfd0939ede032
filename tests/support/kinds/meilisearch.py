"""Meilisearch (the in-repo test server, tests/meili) under the Source contract."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.meili import MeiliTestServer
from tests.meili.store import MeiliError

from .base import Kind, Store, by_hand_script, run_script

MASTER = "masterKey-contract-0123456789"
POSTERS = [{"id": i, "title": f"Poster {i}: the {['deep', 'quiet', 'odd'][i % 3]} signal", "year": 2000 + i % 7,
            "meta": {"tags": ["ml", f"t{i % 4}"], "score": i / 3}} for i in range(1, 31)]
AUTHORS = [{"sku": f"a-{i}", "name": f"Author {i}"} for i in range(5)]
SETTINGS = {"searchableAttributes": ["title", "meta.tags"], "filterableAttributes": ["year"],
            "sortableAttributes": ["year"], "stopWords": ["the"], "synonyms": {"poster": ["placard"]}}


class Meilisearch(Kind):
    """Two indexes (documents, settings, primary keys) in the in-repo test server, exported
    page by page (page size 7, so an export is several requests)."""

    id = "meilisearch"
    source = "search"
    failure_words = ("posters/documents/fetch", "disk I/O error while reading")

    def __init__(self, root: Path, store: Store | None = None) -> None:
        super().__init__(root, store)
        self.server = MeiliTestServer(master_key=MASTER, data_dir=root / "meili" / "data.ms",
                                      dump_dir=root / "meili" / "dumps", snapshot_dir=root / "meili" / "snapshots")
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=20)
        self.wait(self.http.post("/indexes", json={"uid": "posters", "primaryKey": "id"}))
        self.wait(self.http.patch("/indexes/posters/settings", json=SETTINGS))
        self.wait(self.http.post("/indexes/posters/documents", json=POSTERS))
        self.wait(self.http.post("/indexes", json={"uid": "authors", "primaryKey": "sku"}))
        self.wait(self.http.post("/indexes/authors/documents", json=AUTHORS))
        self.p.env = {"TEST_MEILI_KEY": MASTER}
        self.configure({"kind": "meilisearch", "url": self.server.url, "api_key": "${TEST_MEILI_KEY}",
                        "modes": ["export"], "task_timeout": 20, "page_size": 7})
        self.ok("init")

    def wait(self, r: httpx.Response, http: httpx.Client | None = None) -> None:
        assert r.status_code == 202, r.text
        uid = r.json()["taskUid"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            task = (http or self.http).get(f"/tasks/{uid}").json()
            if task["status"] in ("succeeded", "failed", "canceled"):
                assert task["status"] == "succeeded", task
                return
            time.sleep(0.01)
        raise AssertionError(f"task {uid} did not finish")

    def state(self, http: httpx.Client) -> dict[str, Any]:
        out = {}
        for index in http.get("/indexes", params={"limit": 1000}).json()["results"]:
            uid = index["uid"]
            docs = http.post(f"/indexes/{uid}/documents/fetch", json={"limit": 10_000}).json()["results"]
            out[uid] = {"primaryKey": index["primaryKey"], "settings": http.get(f"/indexes/{uid}/settings").json(),
                        "documents": sorted(docs, key=lambda d: str(d.get("id", d.get("sku"))))}
        return out

    def data(self) -> Any:
        return self.state(self.http)

    def destroy(self) -> None:
        for uid in ("posters", "authors"):
            self.wait(self.http.delete(f"/indexes/{uid}"))
        assert self.state(self.http) == {}

    def restore_reads(self, manifest: dict[str, Any]) -> dict[str, Any]:
        # An export restore reads the exports only: the metadata artifact (API keys) is not
        # restored, so damage there is verify's to find (test_verify_…), not restore's.
        return max((a for a in manifest["artifacts"] if a["kind"] == "meilisearch-export"), key=lambda a: a["size"])

    def assert_nothing_restored(self) -> None:
        assert self.state(self.http) == {}

    def restore_args(self) -> list[str]:
        return ["--all"]

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # The server answers the first pages of the export, then fails as on a storage error.
        routes = list(self.server.api.routes)
        for i, (method, pattern, handler, action) in enumerate(routes):
            if method == "POST" and "documents/fetch" in pattern.pattern:
                served: list[int] = []

                def failing(req: Any, handler: Any = handler, served: list[int] = served) -> Any:
                    if req.args["uid"] == "posters":
                        served.append(1)
                        if len(served) > 2:
                            raise MeiliError(500, "internal", "disk I/O error while reading the index", "internal")
                    return handler(req)

                self.server.api.routes[i] = (method, pattern, failing, action)
                break
        else:
            raise AssertionError("the test server has no documents/fetch route")
        try:
            yield
        finally:
            self.server.api.routes = routes
        assert len(served) > 2, "the export never reached the failing page"

    def by_hand(self, commands: list[str], work: Path) -> Any:
        # Into a fresh, empty server: curl and jq as printed, then wait for its tasks.
        assert len(commands) == 2 and all("curl" in c for c in commands), commands
        with MeiliTestServer(master_key=MASTER, data_dir=work / "fresh.ms") as fresh:
            script = by_hand_script(commands, self.repo, self.p.key)
            run_script(script, work, {"REPO": str(self.repo), "MEILI_URL": fresh.url, "MEILI_MASTER_KEY": MASTER})
            fresh.wait_idle()
            with httpx.Client(base_url=fresh.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=20) as c:
                failed = c.get("/tasks", params={"statuses": "failed"}).json()["results"]
                assert failed == [], failed
                return self.state(c)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
