"""The Meilisearch part of ``posterity demo``, used when ``MEILISEARCH_URL`` is set.

On the given server it creates one small index (``posterity_demo_<hex>``, sample posters and
non-default settings), backs it up with an API export, restores it beside itself with
``--as``, compares documents, settings and primary key, and deletes both demo indexes. No
other index on the server is read or written: the source's ``indexes`` names only the demo's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SKIPPED = ("  meilisearch: skipped — set MEILISEARCH_URL (and MEILISEARCH_API_KEY if the server has a master key) "
           "to include it")
SETTINGS: dict[str, Any] = {
    "searchableAttributes": ["title", "authors.name", "keywords"],
    "filterableAttributes": ["year", "venue"],
    "sortableAttributes": ["year"],
    "stopWords": ["the", "of"],
    "synonyms": {"poster": ["placard"]},
    "pagination": {"maxTotalHits": 2000},
}


@dataclass
class DemoResult:
    same: bool
    lines: list[str] = field(default_factory=list)


class MeiliDemo:
    def __init__(self, url: str, key: str | None) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.index = f"posterity_demo_{secrets.token_hex(3)}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @classmethod
    def from_env(cls) -> MeiliDemo | None:
        url = os.environ.get("MEILISEARCH_URL")
        if not url:
            print("demo: Meilisearch skipped (MEILISEARCH_URL is not set)")
            return None
        demo = cls(url, os.environ.get("MEILISEARCH_API_KEY") or None)
        try:
            demo.http.get("/health").raise_for_status()
            demo.http.get("/version").raise_for_status()
        except httpx.HTTPError as exc:
            print(f"demo: Meilisearch skipped: {url} did not answer /health and /version ({exc})")
            return None
        return demo

    def config_section(self) -> str:
        lines = ["", "[sources.search]", 'kind = "meilisearch"', f'url = "{self.url}"']
        if self.key:
            lines.append('api_key = "${MEILISEARCH_API_KEY}"')
        lines += ['modes = ["export"]', f'indexes = ["{self.index}"]', "page_size = 250", ""]
        return "\n".join(lines)

    def _wait(self, r: httpx.Response) -> None:
        r.raise_for_status()
        uid = r.json()["taskUid"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            task = self.http.get(f"/tasks/{uid}").json()
            if task["status"] == "succeeded":
                return
            if task["status"] in ("failed", "canceled"):
                raise SystemExit(f"demo: Meilisearch task {uid} {task['status']}: {task.get('error')}")
            time.sleep(0.05)
        raise SystemExit(f"demo: Meilisearch task {uid} did not finish")

    def load(self, count: int) -> None:
        docs = [
            {"id": i, "title": f"Poster {i} of the demo", "year": 2015 + i % 10, "venue": ["ICML", "NeurIPS"][i % 2],
             "authors": [{"name": f"Author {i % 37}", "affiliation": {"city": "Vienna"}}],
             "keywords": ["science", f"k{i % 5}"]}
            for i in range(1, count + 1)
        ]
        print(f"demo: Meilisearch at {self.url}; creating index {self.index} with {count} sample posters")
        self._wait(self.http.post("/indexes", json={"uid": self.index, "primaryKey": "id"}))
        self._wait(self.http.patch(f"/indexes/{self.index}/settings", json=SETTINGS))
        self._wait(self.http.post(f"/indexes/{self.index}/documents", json=docs))

    def state(self, uid: str) -> dict[str, Any]:
        docs: list[dict[str, Any]] = []
        while True:
            page = self.http.get(f"/indexes/{uid}/documents", params={"offset": len(docs), "limit": 1000}).json()
            docs += page["results"]
            if len(docs) >= page["total"] or not page["results"]:
                break
        return {"primaryKey": self.http.get(f"/indexes/{uid}").json()["primaryKey"],
                "settings": self.http.get(f"/indexes/{uid}/settings").json(),
                "documents": sorted(docs, key=lambda d: d["id"])}

    def run(self, cli: Callable[[list[str], Path], str], work: Path) -> DemoResult:
        restored = f"{self.index}_restored"
        try:
            cli(["backup", "search"], work)
            cli(["restore", "search", "latest", "--index", self.index, "--as", restored], work)
            before, after = self.state(self.index), self.state(restored)
        finally:
            for uid in (self.index, restored):
                with contextlib.suppress(httpx.HTTPError):
                    self.http.delete(f"/indexes/{uid}")
            self.http.close()
        same = before == after
        return DemoResult(same, [
            f"  meilisearch: index {self.index} ({len(before['documents'])} documents) exported, restored as "
            f"{restored} through a temporary index and a swap, and compared (documents, settings, primary key): "
            + ("identical" if same else "MISMATCH"),
            "  meilisearch: both demo indexes were deleted again",
        ])
