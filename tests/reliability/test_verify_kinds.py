"""verify --read-data checks each artifact for what its kind says it is: a files tar is
listed to its end, a Meilisearch dump (gzip tar) too, an export must hold as many JSON
documents as the manifest counted, the metadata must be JSON. A payload that decodes
perfectly (sha256, age and zstd all consistent) but holds a cut tar is still caught.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from tests.meili import MeiliTestServer
from tests.reliability.harness import Setup

from posterity.pipeline import Stages, encode

MASTER = "masterKey-reliability-0123456789"


@pytest.fixture
def kinds_setup(tmp_path, module_db):
    files = tmp_path / "etc"
    (files / "sub").mkdir(parents=True)
    for i in range(20):
        (files / "sub" / f"f{i}.conf").write_text(f"setting_{i} = {i * 7}\n" * 50)
    server = MeiliTestServer(
        master_key=MASTER,
        data_dir=tmp_path / "meili" / "data.ms",
        dump_dir=tmp_path / "meili" / "dumps",
        snapshot_dir=tmp_path / "meili" / "snapshots",
    )
    with server:
        c = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {MASTER}"})
        for path, body in (
            ("/indexes", {"uid": "posters", "primaryKey": "id"}),
            ("/indexes/posters/documents", [{"id": i, "title": f"poster {i}"} for i in range(30)]),
        ):
            uid = c.post(path, json=body).json()["taskUid"]
            while c.get(f"/tasks/{uid}").json()["status"] not in ("succeeded", "failed"):
                time.sleep(0.01)
        s = Setup(tmp_path / "env", f"file://{tmp_path / 'repo'}", module_db.dsn)
        s.more_sources = f"""
[sources.etc]
kind = "files"
paths = ["{files}"]

[sources.search]
kind = "meilisearch"
url = "{server.url}"
api_key = "{MASTER}"
modes = ["dump", "export"]
dump_dir = "{server.dump_dir}"
"""
        s.write_config()
        s.init()
        yield s
        c.close()


def test_each_kind_is_checked_and_a_cut_tar_is_caught(kinds_setup: Setup):
    s = kinds_setup
    for source in ("etc", "search"):
        r = s.run("backup", source)
        assert r.code == 0, r
    r = s.run("verify", "--read-data", "--json")
    assert r.code == 0, r
    checked = {k.rsplit("/", 1)[1]: v for k, v in r.json()["checked"].items()}
    tar_name = next(n for n in checked if n.endswith(".tar.zst.age") or "tar" in n)
    assert checked[tar_name]["content"] == "tar listing" and checked[tar_name]["entries"] >= 21, (
        checked
    )
    dump = next(v for n, v in checked.items() if n.endswith(".dump.zst.age"))
    assert dump["content"] == "tar listing" and dump["entries"] >= 1, checked
    export = next(v for n, v in checked.items() if n.startswith("index-posters"))
    assert export == {"content": "Meilisearch export", "documents": 30}, checked
    assert checked["metadata.json.zst.age"] == {"content": "JSON document"}, checked

    # Re-encode the files tar cut at 60% and make the manifest agree byte for byte.
    ctx = s.context()
    m = ctx.repo.find("latest", "etc")
    (art,) = [a for a in m.artifacts if "tar" in a.kind]
    raw = io.BytesIO()
    ctx.repo.read_artifact(art, raw, ctx.identities())
    with tarfile.open(fileobj=io.BytesIO(raw.getvalue())) as t:
        assert len(t.getnames()) >= 21  # the original is a good tar
    cut = raw.getvalue()[: len(raw.getvalue()) * 6 // 10]
    stored = b"".join(encode(io.BytesIO(cut), Stages((s.recipient,))))
    repo_dir = Path(s.repo_url.removeprefix("file://"))
    (repo_dir / art.key).write_bytes(stored)
    doc = json.loads((repo_dir / m.key).read_text())
    for a in doc["artifacts"]:
        if a["key"] == art.key:
            a.update(sha256=hashlib.sha256(stored).hexdigest(), size=len(stored), raw_size=len(cut))
    (repo_dir / m.key).write_text(json.dumps(doc))
    (s.root / "state").rename(s.root / "state.moved")

    r = s.run("verify", "--read-data", "--source", "etc")
    assert r.code == 6, r
    assert f"BAD content: {art.key} decodes, but is not a complete tar archive" in r.err, r
    r = s.run("verify", "--read-data", "--source", "search")
    assert r.code == 0, r

    # The files drill restores the backup for real, so it catches the cut tar too.
    r = s.run("drill", "--source", "etc")
    assert r.code == 10 and "FAILED" in r.out and art.key in r.err and "unreadable" in r.err, r
