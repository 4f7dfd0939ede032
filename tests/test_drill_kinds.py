"""`posterity drill` of files and Meilisearch sources, through the real command line.

Files: restored into a temporary folder under staging_dir and compared file by file with the
manifest. Meilisearch (the in-repo test server): every index restored into a temporary
``<uid>__drill_<hex>`` index, counted and queried, then deleted — also when the drill fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.meili import MeiliTestServer
from tests.support.project import InProcessRun, Project, make_project, run_in_process

from posterity.operations.drill_files import check_tree
from posterity.operations.drill_meilisearch import pick_word

MASTER = "masterKey-posterity-drill-0123456789"


def run(p: Project, *args: str) -> InProcessRun:
    return run_in_process(p, *args)


def ok(p: Project, *args: str) -> InProcessRun:
    r = run(p, *args)
    assert r.code == 0, f"posterity {' '.join(args)} exited {r.code}\n{r.text}"
    return r


def project(
    tmp_path: Path, name: str, source: dict[str, Any], env: dict[str, str] | None = None
) -> Project:
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources[name] = source
    p.env = dict(env or {})
    p.write_config()
    ok(p, "init")
    return p


def backup(p: Project, source: str) -> dict[str, Any]:
    bid = ok(p, "--json", "backup", source).json()["backups"][0]["id"]
    return ok(p, "--json", "show", bid).json()


def stored(tmp_path: Path, key: str) -> dict[str, Any]:
    return json.loads((tmp_path / "repo" / key).read_text())


def drill_folders(p: Project) -> list[Path]:
    return sorted((p.root / "staging").glob("posterity-drill-*"))


# --------------------------------------------------------------------------- files


@pytest.fixture
def files_project(tmp_path: Path) -> Project:
    base = tmp_path / "data" / "srv"
    (base / "conf" / "deep").mkdir(parents=True)
    (base / "empty").mkdir()
    (base / "conf" / "app.toml").write_text("[server]\nport = 8080\n")
    (base / "conf" / "deep" / "blob.bin").write_bytes(os.urandom(200_000))
    (base / "conf" / "locked.env").write_text("SECRET=1\n")
    os.chmod(base / "conf" / "locked.env", 0o400)
    (base / "conf" / "current.toml").symlink_to("app.toml")
    os.link(base / "conf" / "app.toml", base / "conf" / "hard.toml")
    os.chmod(base / "conf" / "deep", 0o500)  # a read-only folder: the drill must still remove it
    yield project(tmp_path, "config", {"kind": "files", "paths": [str(base)]})
    os.chmod(base / "conf" / "deep", 0o700)


def test_files_drill_restores_compares_every_file_and_removes_the_folder(
    tmp_path: Path, files_project: Project
) -> None:
    p = files_project
    manifest = backup(p, "config")
    r = ok(p, "--json", "drill", "--source", "config")
    (report,) = r.json()["drills"]
    assert report["ok"] and report["kind"] == "files" and report["backup"] == manifest["id"], report
    assert report["restore_seconds"] > 0 and report["bytes"] >= 200_000
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["files"]["ok"] and checks["files"]["value"] == 4, checks  # 3 files + 1 hard link
    assert checks["files"]["detail"].startswith("4 files (")
    assert checks["symlinks"] == {
        "name": "symlinks",
        "ok": True,
        "detail": "1 symlink, targets as recorded",
        "value": 1,
    }
    assert checks["folders"]["ok"] and checks["folders"]["value"] >= 4
    assert report["target"].startswith(f"temporary folder {p.root / 'staging'}/posterity-drill-")
    assert report["cleanup"].endswith(" removed") and drill_folders(p) == []
    assert stored(tmp_path, report["key"])["checks"] == report["checks"]
    # The human rendering names every check.
    r = ok(p, "drill")
    assert "config: drill " in r.out and "passed" in r.out and "ok  files: 4 files" in r.out, r.text
    assert drill_folders(p) == []


def test_files_drill_of_a_damaged_payload_fails_naming_it_and_removes_the_folder(
    tmp_path: Path, files_project: Project
) -> None:
    p = files_project
    manifest = backup(p, "config")
    (art,) = [a for a in manifest["artifacts"] if a["kind"] == "tar-pax"]
    obj = tmp_path / "repo" / art["key"]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    r = run(p, "drill", "--source", "config")
    assert r.code == 6, r.text
    assert f"Drill of config (backup {manifest['id']}) failed" in r.err, r.text
    assert (
        f"{art['key']} does not match its manifest" in r.err and "Report: drills/config/" in r.err
    ), r.text
    assert "did not restore" in r.out and "cleanup: temporary folder" in r.out, r.text
    assert drill_folders(p) == []
    key = r.err.split("Report: ")[1].split(".json")[0] + ".json"
    report = stored(tmp_path, key)
    assert (
        report["ok"] is False
        and "ChecksumMismatch" in report["error"]
        and report["cleanup"].endswith(" removed")
    )


def test_files_check_names_each_file_that_differs(tmp_path: Path) -> None:
    import hashlib

    root = tmp_path / "restored"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "a.conf").write_text("abc")
    (root / "etc" / "b.conf").write_text("xyz")
    (root / "etc" / "link").symlink_to("elsewhere")
    sha = hashlib.sha256(b"abc").hexdigest()
    records = [
        {"path": "etc", "type": "dir"},
        {"path": "etc/a.conf", "type": "file", "size": 3, "sha256": sha},
        {"path": "etc/b.conf", "type": "file", "size": 3, "sha256": sha},  # same size, other bytes
        {"path": "etc/gone.conf", "type": "file", "size": 1, "sha256": sha},
        {"path": "etc/link", "type": "symlink", "target": "a.conf"},
    ]
    checks = {c.name: c for c in check_tree(root, records)}
    assert checks["folders"].ok
    assert not checks["files"].ok and checks["files"].value == 1
    assert checks["files"].detail == (
        "2 of 3 files (7 bytes) differ from the backup's file list: /etc/b.conf: sha256 differs from the one "
        "recorded at backup time; /etc/gone.conf: missing"
    )
    assert (
        not checks["symlinks"].ok
        and "/etc/link: points to 'elsewhere', not 'a.conf'" in checks["symlinks"].detail
    )
    assert [c.name for c in check_tree(root, None)] == ["file list"]


# --------------------------------------------------------------------------- Meilisearch

POSTERS = [
    {
        "id": i,
        "title": f"Poster {i}: the {['deep', 'quiet', 'odd'][i % 3]} signal",
        "year": 2000 + i % 7,
        "meta": {"tags": ["ml", f"t{i % 4}"]},
        "_vectors": {"default": {"embeddings": [[i / 10, 0.5]], "regenerate": False}},
    }
    for i in range(1, 26)
]
AUTHORS = [{"sku": f"a-{i}", "name": f"Author {i}"} for i in range(3)]


@dataclass
class Meili:
    server: MeiliTestServer
    http: httpx.Client

    def wait(self, r: httpx.Response) -> None:
        assert r.status_code == 202, r.text
        uid = r.json()["taskUid"]
        for _ in range(1000):
            if self.http.get(f"/tasks/{uid}").json()["status"] in (
                "succeeded",
                "failed",
                "canceled",
            ):
                return
            time.sleep(0.01)
        raise AssertionError(f"task {uid} did not finish")

    def uids(self) -> list[str]:
        return sorted(
            i["uid"] for i in self.http.get("/indexes", params={"limit": 1000}).json()["results"]
        )

    def count(self, uid: str) -> int:
        return self.http.get(f"/indexes/{uid}/stats").json()["numberOfDocuments"]


@pytest.fixture
def meili(tmp_path: Path) -> Iterator[Meili]:
    server = MeiliTestServer(
        master_key=MASTER,
        data_dir=tmp_path / "meili" / "data.ms",
        dump_dir=tmp_path / "meili" / "dumps",
        snapshot_dir=tmp_path / "meili" / "snapshots",
    )
    with (
        server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=20
        ) as c,
    ):
        m = Meili(server, c)
        m.wait(c.post("/indexes", json={"uid": "posters", "primaryKey": "id"}))
        m.wait(
            c.patch(
                "/indexes/posters/settings",
                json={"searchableAttributes": ["meta.tags", "title"], "stopWords": ["ml"]},
            )
        )
        m.wait(c.post("/indexes/posters/documents", json=POSTERS))
        m.wait(c.post("/indexes", json={"uid": "authors", "primaryKey": "sku"}))
        m.wait(c.post("/indexes/authors/documents", json=AUTHORS))
        m.wait(c.post("/indexes", json={"uid": "empty", "primaryKey": "id"}))
        yield m


def meili_project(tmp_path: Path, m: Meili, **source: Any) -> Project:
    body: dict[str, Any] = {
        "kind": "meilisearch",
        "url": m.server.url,
        "api_key": "${TEST_MEILI_KEY}",
        "modes": ["export"],
        "task_timeout": 20,
        "page_size": 7,
        **source,
    }
    return project(tmp_path, "search", body, {"TEST_MEILI_KEY": MASTER})


def test_meilisearch_drill_counts_queries_and_leaves_no_index(tmp_path: Path, meili: Meili) -> None:
    p = meili_project(tmp_path, meili)
    manifest = backup(p, "search")
    before = meili.uids()
    r = ok(p, "--json", "drill", "--source", "search")
    (report,) = r.json()["drills"]
    assert (
        report["ok"] and report["kind"] == "meilisearch" and report["backup"] == manifest["id"]
    ), report
    assert report["restore_seconds"] > 0 and report["bytes"] > 0
    assert "__drill_" in report["target"] and "(from the export)" in report["target"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["posters: documents"] == {
        "name": "posters: documents",
        "ok": True,
        "detail": "25 documents, as recorded at backup time",
        "value": 25,
    }
    assert checks["authors: documents"]["value"] == 3 and checks["empty: documents"]["value"] == 0
    assert checks["posters: primary key"]["detail"] == "'id', as recorded"
    assert checks["authors: primary key"]["value"] == "sku"
    # The word query skips the stop word "ml" (first searchable attribute) and takes one of the title.
    assert checks["posters: sample query"]["ok"]
    assert (
        checks["posters: sample query"]["detail"] == "empty query: 25 hits; query 'Poster': 25 hits"
    )
    assert (
        checks["authors: sample query"]["detail"] == "empty query: 3 hits; query 'Author': 3 hits"
    )
    assert (
        checks["empty: sample query"]["detail"]
        == "the index is empty; the empty query returns no hit"
    )
    assert all(c["ok"] for c in report["checks"])
    assert report["cleanup"].startswith("3 temporary index(es) deleted; no *__drill_")
    assert meili.uids() == before == ["authors", "empty", "posters"]
    assert meili.count("posters") == 25  # the live index was never touched
    assert stored(tmp_path, report["key"])["ok"] is True


def test_meilisearch_drill_from_a_dump(tmp_path: Path, meili: Meili) -> None:
    p = meili_project(tmp_path, meili, modes=["dump"], dump_dir=str(meili.server.dump_dir))
    backup(p, "search")
    r = ok(p, "--json", "drill")
    (report,) = r.json()["drills"]
    assert report["ok"] and "(from the dump)" in report["target"], report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["posters: documents"]["value"] == 25 and checks["posters: sample query"]["ok"]
    assert meili.uids() == ["authors", "empty", "posters"]


def test_meilisearch_drill_of_a_snapshot_only_backup_says_it_needs_export_or_dump(
    tmp_path: Path, meili: Meili
) -> None:
    p = meili_project(
        tmp_path, meili, modes=["snapshot"], snapshot_dir=str(meili.server.snapshot_dir)
    )
    backup(p, "search")
    r = run(p, "drill", "--source", "search")
    assert r.code == 2, r.text
    assert (
        "failed: Backup " in r.err and "holds only a snapshot: a drill restores indexes" in r.err
    ), r.text
    assert "needs a backup taken with mode export or dump" in r.err and 'Add "export"' in r.err, (
        r.text
    )
    assert "BAD restore: not drillable: the backup holds only a snapshot" in r.out, r.text
    assert "did not restore" in r.out and "cleanup: nothing to clean up" in r.out, r.text
    assert meili.uids() == ["authors", "empty", "posters"]


def test_failing_meilisearch_drill_says_why_and_leaves_no_index(
    tmp_path: Path, meili: Meili
) -> None:
    p = meili_project(tmp_path, meili)
    manifest = backup(p, "search")
    meili.server.fail_next("documentAdditionOrUpdate", "internal", "disk on fire")
    r = run(p, "drill", "--source", "search")
    assert r.code == 10, r.text
    assert (
        f"Drill of search (backup {manifest['id']}) failed: Restore from backup {manifest['id']} failed: "
        in r.err
    )
    assert (
        "documentAdditionOrUpdate" in r.err
        and "disk on fire" in r.err
        and "Report: drills/search/" in r.err
    ), r.text
    assert (
        "did not restore" in r.out and "cleanup: no temporary index was left to delete" in r.out
    ), r.text
    assert meili.uids() == ["authors", "empty", "posters"]
    key = r.err.split("Report: ")[1].split(".json")[0] + ".json"
    report = stored(tmp_path, key)
    assert report["ok"] is False and "disk on fire" in report["error"]
    # The next drill passes.
    assert ok(p, "--json", "drill").json()["drills"][0]["ok"]
    assert meili.uids() == ["authors", "empty", "posters"]


def test_pick_word_follows_searchable_attributes_and_stop_words() -> None:
    doc = {
        "id": "x-1",
        "title": "The Quiet signal",
        "meta": {"tags": ["ml", "vision"]},
        "_vectors": {"a": "zzz"},
    }
    assert pick_word(doc, {"searchableAttributes": ["*"], "stopWords": []}) == "The"
    assert pick_word(doc, {"searchableAttributes": ["*"], "stopWords": ["the"]}) == "Quiet"
    assert (
        pick_word(doc, {"searchableAttributes": ["meta.tags", "title"], "stopWords": []})
        == "vision"
    )
    assert (
        pick_word(doc, {"searchableAttributes": ["title"], "stopWords": ["the", "quiet"]})
        == "signal"
    )
    assert pick_word({"id": 1, "n": 42}, {"searchableAttributes": ["*"]}) is None
