"""Restore points end to end: `posterity backup` of every source (real PostgreSQL and real
files) writes one point; `posterity restore --point` puts the database and the files back
together, checked against the originals; a failed source means no point."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from tests.support.filestree import make_tree, run, snapshot
from tests.support.project import make_project

from posterity.config import load_config
from posterity.demo.sample_data import fingerprint
from posterity.operations.context import Context


def db_exists(cluster, name: str) -> bool:
    return cluster.psql(f"select count(*) from pg_database where datname = '{name}'").strip() == "1"


def file_hashes(base: Path, roots: list[str]) -> dict[str, str]:
    snap = snapshot(base, roots)
    return {k: v[5] for k, v in snap.items() if v[0] == "file"}


def point_keys(project) -> list[str]:
    ctx = Context(load_config(project.config)[0])
    return sorted(i.key for i in ctx.repo.store.list("points/"))


@pytest.fixture
def platform(tmp_path, sample_db, capsys):
    """A project with the sample database and a configuration tree (restore_to configured)."""
    base = tmp_path / "live"
    roots = make_tree(base)
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn, "globals": False}
    p.sources["config"] = {
        "kind": "files",
        "paths": roots,
        "restore_to": str(tmp_path / "config-restored"),
    }
    p.write_config()
    assert run(capsys, p.config, "init").code == 0
    return p, base, roots


def test_point_backup_and_restore_of_database_and_files_together(
    platform, sample_db, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no wrapped ids
    p, base, roots = platform
    original_db = fingerprint(sample_db.dsn)
    original_files = file_hashes(Path("/"), roots)
    assert len(original_files) >= 8

    r = run(capsys, p.config, "backup")
    assert r.code == 0, r.err
    assert "restore point " in r.out
    points = json.loads(run(capsys, p.config, "--json", "list", "--points").out)
    assert len(points) == 1 and point_keys(p) == [f"points/{points[0]['id']}.json"]
    members = {b["source"]: b for b in points[0]["backups"]}
    assert set(members) == {"config", "db"}
    assert members["db"]["kind"] == "postgres" and "/" in members["db"]["consistency_marker"]["lsn"]
    assert members["config"]["consistency_marker"]["files_digest"].startswith("sha256:")
    listed = {b["id"] for b in json.loads(run(capsys, p.config, "--json", "list").out)}
    assert {members["db"]["backup"], members["config"]["backup"]} == listed
    human = run(capsys, p.config, "list", "--points").out
    assert points[0]["id"] in human and "lsn" in human

    # Destroy both.
    sample_db.cluster.psql(f'DROP DATABASE "{sample_db.name}" WITH (FORCE)')
    shutil.rmtree(base)

    # Checked before anything is restored: no --to-database …
    r = run(capsys, p.config, "restore", "--point", "latest")
    assert r.code == 2 and "--to-database" in r.err
    # … and a file in the way: the database is not created either.
    target = tmp_path / "config-restored"
    blocker = target / roots[2].lstrip("/")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way\n")
    r = run(capsys, p.config, "restore", "--point", "latest", "--to-database", sample_db.name)
    assert r.code == 9 and "already exist" in r.err
    assert not db_exists(sample_db.cluster, sample_db.name)
    blocker.unlink()

    r = run(
        capsys,
        p.config,
        "restore",
        "--point",
        points[0]["id"][:18],
        "--to-database",
        sample_db.name,
    )
    assert r.code == 0, r.err
    assert f"restore point {points[0]['id']} restored" in r.out
    assert fingerprint(sample_db.dsn) == original_db
    assert file_hashes(target, roots) == original_files  # into the configured restore_to

    # --to overrides restore_to.
    other = tmp_path / "elsewhere"
    r = run(
        capsys,
        p.config,
        "restore",
        "--point",
        "latest",
        "--to-database",
        sample_db.name + "_2",
        "--to",
        str(other),
    )
    assert r.code == 0, r.err
    assert file_hashes(other, roots) == original_files
    sample_db.cluster.psql(f'DROP DATABASE IF EXISTS "{sample_db.name}_2" WITH (FORCE)')


def test_no_point_when_a_source_fails(tmp_path, capsys):
    base = tmp_path / "live"
    roots = make_tree(base)
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["config"] = {"kind": "files", "paths": roots}
    p.sources["broken"] = {"kind": "files", "paths": [str(base / "not-there")]}
    p.write_config()
    assert run(capsys, p.config, "init").code == 0

    r = run(capsys, p.config, "backup")
    assert r.code == 5
    assert "broken" in r.err and "not-there does not exist" in r.err
    assert "no restore point written" in r.err
    assert point_keys(p) == []
    # The source that worked keeps its backup.
    assert [b["source"] for b in json.loads(run(capsys, p.config, "--json", "list").out)] == [
        "config"
    ]
    r = run(capsys, p.config, "restore", "--point", "latest", "--to", str(tmp_path / "x"))
    assert r.code == 3 and "no restore point" in r.err

    # Fixed: the next run writes a point; the unchanged tree is recorded without a payload.
    (base / "not-there").mkdir()
    (base / "not-there" / "f").write_bytes(hashlib.sha256(b"x").digest())
    r = run(capsys, p.config, "--json", "backup")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["point"] is not None and out["failures"] == []
    by_source = {b["source"]: b for b in out["backups"]}
    assert by_source["config"]["unchanged_from"] is not None
    assert {b["source"]: b["unchanged_from"] for b in out["point"]["backups"]}[
        "config"
    ] == by_source["config"]["unchanged_from"]
    assert point_keys(p) == [f"points/{out['point']['id']}.json"]


def test_point_with_meilisearch_and_files(tmp_path, capsys):
    """Meilisearch (the in-repo test server) and files in one point, restored together."""
    import httpx
    from tests.meili import MeiliTestServer

    key = "masterKey-points-0123456789"
    base = tmp_path / "live"
    roots = make_tree(base)
    docs = [{"id": i, "title": f"Poster {i}"} for i in range(1, 31)]
    with (
        MeiliTestServer(
            master_key=key,
            data_dir=tmp_path / "meili" / "data.ms",
            dump_dir=tmp_path / "meili" / "dumps",
        ) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=20
        ) as c,
    ):

        def wait(resp: httpx.Response) -> None:
            uid = resp.json()["taskUid"]
            for _ in range(1000):
                if c.get(f"/tasks/{uid}").json()["status"] == "succeeded":
                    return
                time.sleep(0.01)
            raise AssertionError(f"task {uid} did not succeed")

        wait(c.post("/indexes", json={"uid": "posters", "primaryKey": "id"}))
        wait(c.post("/indexes/posters/documents", json=docs))
        p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
        p.sources["search"] = {
            "kind": "meilisearch",
            "url": server.url,
            "api_key": key,
            "modes": ["export"],
        }
        p.sources["config"] = {"kind": "files", "paths": roots}
        p.write_config()
        assert run(capsys, p.config, "init").code == 0
        original_files = file_hashes(Path("/"), roots)

        r = run(capsys, p.config, "--json", "backup")
        assert r.code == 0, r.err
        point = json.loads(r.out)["point"]
        marker = {b["source"]: b["consistency_marker"] for b in point["backups"]}["search"]
        assert isinstance(marker["last_task_uid"], int)

        wait(c.delete("/indexes/posters"))
        shutil.rmtree(base)
        dest = tmp_path / "restored"
        r = run(capsys, p.config, "restore", "--point", point["id"], "--to", str(dest))
        assert r.code == 0, r.err
        fetched = c.post("/indexes/posters/documents/fetch", json={"limit": 100}).json()["results"]
        assert sorted(fetched, key=lambda d: d["id"]) == docs
        assert file_hashes(dest, roots) == original_files
