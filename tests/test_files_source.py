"""Configuration-file backups end to end through the command line, with real files and real
stores (a local folder and SeaweedFS S3): back up, destroy, restore, compare every byte and
every mode, owner, mtime and link; diff two backups from their manifests; record an
unchanged tree without a new payload; refuse crafted archives that try to escape."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.filestree import AS_ROOT, make_tree, run, snapshot
from tests.support.ops import s3_repo_extra
from tests.support.project import make_project

from posterity.config import load_config
from posterity.operations.context import Context
from posterity.repository import ArtifactRecord, Manifest, new_backup_id
from posterity.repository.layout import payload_key
from posterity.sources.files.config import FilesConfig
from posterity.sources.files.source import FilesSource

EXCLUDE = ["*.tmp", "**/cache/**"]


def files_project(root: Path, url: str, paths: list[str], repo_extra: str = "", **source: object):
    p = make_project(root, url)
    p.sources["config"] = {"kind": "files", "paths": paths, "exclude": EXCLUDE, **source}
    p.write_config()
    if repo_extra:
        text = p.config.read_text().replace("\n[encryption]", f"\n{repo_extra}\n[encryption]", 1)
        p.config.write_text(text)
    return p


@pytest.fixture
def tree(tmp_path) -> tuple[Path, list[str]]:
    base = tmp_path / "live"
    return base, make_tree(base)


@pytest.fixture
def project(tmp_path, tree, capsys):
    p = files_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}", tree[1])
    assert run(capsys, p.config, "init").code == 0
    return p


def backup(capsys, project) -> dict:
    r = run(capsys, project.config, "--json", "backup", "config")
    assert r.code == 0, r.err
    return json.loads(r.out)["backups"][0]


def manifest(capsys, project, bid: str) -> dict:
    r = run(capsys, project.config, "--json", "show", bid)
    assert r.code == 0, r.err
    return json.loads(r.out)


def store_keys(project) -> set[str]:
    ctx = Context(load_config(project.config)[0])
    return {i.key for i in ctx.repo.store.list("backups/")}


# -- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["file", "s3"])
def test_round_trip_keeps_content_modes_owners_mtimes_and_links(
    store, tmp_path, tree, capsys, request
):
    base, roots = tree
    if store == "file":
        p = files_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}", roots)
    else:
        s3_server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        p = files_project(tmp_path / "proj", f"s3://{bucket}/prod", roots, s3_repo_extra(s3_server))
    assert run(capsys, p.config, "init").code == 0
    before = snapshot(Path("/"), roots)
    expected = {k: v for k, v in before.items() if not k.endswith(".tmp") and "/cache/" not in k}
    assert len(before) - len(expected) == 3  # scratch.tmp, cache/deep, cache/deep/blob
    assert any(k.endswith("/cache") for k in expected)  # the folder itself is kept, empty

    b = backup(capsys, p)
    m = manifest(capsys, p, b["id"])
    records = {r["path"]: r for r in m["facts"]["files"]}
    assert set(records) == {k.lstrip("/") for k in expected}
    app = roots[0].lstrip("/")
    assert records[f"{app}/app.toml"]["mode"] == "0640"
    assert records[f"{app}/hardlinked.toml"]["type"] == "hardlink"
    assert (records[f"{app}/current.toml"]["type"], records[f"{app}/current.toml"]["target"]) == (
        "symlink",
        "app.toml",
    )
    assert "hunter2" not in json.dumps(m)  # metadata and hashes only

    shutil.rmtree(base)  # destroy
    dest = tmp_path / "restored"
    r = run(capsys, p.config, "restore", "config", b["id"], "--to", str(dest))
    assert r.code == 0, r.err
    assert "restored config backup" in r.out
    after = snapshot(dest, roots)
    assert after == expected
    # The absolute nginx link is restored as written (like tar), pointing at the original path.
    enabled = dest / roots[1].lstrip("/") / "posters"
    assert os.readlink(enabled) == str(base / "etc" / "nginx" / "sites-available" / "posters")
    if AS_ROOT:
        assert after[f"{roots[0]}/secret.env"][2:4] == (65534, 65534)


def test_by_hand_restore_with_gnu_tar(project, tree, tmp_path, capsys):
    """The payload is age(zstd(tar)): a plain GNU tar reads it."""
    if not shutil.which("tar"):
        pytest.skip("GNU tar is not installed")
    base, roots = tree
    b = backup(capsys, project)
    ctx = Context(load_config(project.config)[0])
    m = ctx.repo.find(b["id"], "config")
    raw = io.BytesIO()
    ctx.repo.read_artifact(m.artifacts[0], raw, ctx.identities())
    out = tmp_path / "by-hand"
    out.mkdir()
    subprocess.run(["tar", "-xpf", "-", "-C", str(out)], input=raw.getvalue(), check=True)
    assert snapshot(out, roots)[roots[2]] == snapshot(Path("/"), roots)[roots[2]]
    app_toml = out / roots[0].lstrip("/") / "app.toml"
    assert app_toml.read_text() == (base / "etc" / "posters-science" / "app.toml").read_text()


# -- diff and unchanged --------------------------------------------------------------------


def test_diff_names_added_removed_modified_and_mode_changes(project, tree, capsys):
    base, roots = tree
    app = base / "etc" / "posters-science"
    first = backup(capsys, project)["id"]
    (app / "secret.env").write_text("DATABASE_PASSWORD=rotated\n")
    os.chmod(app / "bin" / "run.sh", 0o700)
    (app / "current.toml").unlink()
    (app / "new.toml").write_text("added = true\n")
    second = backup(capsys, project)["id"]

    r = run(capsys, project.config, "diff", first, second)
    assert r.code == 0, r.err
    rel = roots[0].lstrip("/")
    lines = {tuple(line.split()[:2]) for line in r.out.splitlines()[1:-1]}
    assert lines == {
        ("added", f"{rel}/new.toml"),
        ("removed", f"{rel}/current.toml"),
        ("modified", f"{rel}/secret.env"),
        ("mode", f"{rel}/bin/run.sh"),
        ("touched", rel),  # the folder's mtime moved with the added and removed entries
    }
    assert "0755 → 0700" in r.out

    data = json.loads(run(capsys, project.config, "--json", "diff", first, second).out)
    assert data["summary"] == {
        "added": 1,
        "removed": 1,
        "modified": 1,
        "mode": 1,
        "owner": 0,
        "touched": 1,
    }
    # One ref: compared with the backup before it.
    assert (
        json.loads(run(capsys, project.config, "--json", "diff", second).out)["changes"]
        == data["changes"]
    )
    # Nothing changed between a backup and itself.
    assert run(capsys, project.config, "diff", second, second).out.strip().endswith("no changes")


def test_unchanged_tree_is_recorded_without_a_new_payload(project, tree, tmp_path, capsys):
    base, roots = tree
    first = backup(capsys, project)
    keys_before = store_keys(project)
    r = run(capsys, project.config, "backup", "config")
    assert r.code == 0 and "unchanged since " + first["id"] in r.out
    second = json.loads(run(capsys, project.config, "--json", "list").out)
    second_id = next(b["id"] for b in second if b["id"] != first["id"])
    added = store_keys(project) - keys_before
    assert added == {f"backups/config/{second_id}/manifest.json"}  # no payload stored

    m2 = manifest(capsys, project, second_id)
    assert m2["facts"]["unchanged_from"] == first["id"]
    assert [a["key"] for a in m2["artifacts"]] == [a["key"] for a in first["artifacts"]]
    assert {b["id"]: b["unchanged_from"] for b in second} == {
        first["id"]: None,
        second_id: first["id"],
    }
    assert "unchanged" in run(capsys, project.config, "show", second_id).out

    # It restores like any backup (from the first backup's payload).
    expected = snapshot(Path("/"), roots)
    dest = tmp_path / "from-unchanged"
    assert run(capsys, project.config, "restore", "config", second_id, "--to", str(dest)).code == 0
    assert snapshot(dest, roots) == {
        k: v for k, v in expected.items() if not k.endswith(".tmp") and "/cache/" not in k
    }

    # A change (even of an mtime) is stored again.
    os.utime(base / "etc" / "meilisearch.toml", ns=(1, 1))
    third = backup(capsys, project)
    assert third["unchanged_from"] is None
    assert {f"backups/config/{third['id']}/files.tar.zst.age"} <= store_keys(project)


def test_unchanged_tree_is_stored_again_after_a_recipient_change(project, tree, capsys):
    from posterity.pipeline import generate_identity

    backup(capsys, project)
    new_recipient = generate_identity(project.root / "key2.txt")
    text = project.config.read_text().replace(
        "recipients = [", f'recipients = ["{new_recipient}", ', 1
    )
    project.config.write_text(text)
    refused = run(capsys, project.config, "backup", "config")  # an unrecorded recipient: refused
    assert refused.code == 7 and "posterity key recipients rotate" in refused.err, refused
    assert run(capsys, project.config, "key", "recipients", "rotate", "--reason", "test").code == 0
    again = backup(capsys, project)
    assert again["unchanged_from"] is None
    assert f"backups/config/{again['id']}/files.tar.zst.age" in store_keys(project)


# -- restore safety ----------------------------------------------------------------------


def test_restore_refuses_to_overwrite_without_the_flag(project, tree, tmp_path, capsys):
    base, roots = tree
    bid = backup(capsys, project)["id"]
    dest = tmp_path / "restored"
    assert run(capsys, project.config, "restore", "config", bid, "--to", str(dest)).code == 0
    edited = dest / roots[0].lstrip("/") / "app.toml"
    edited.write_text("edited after the restore\n")

    r = run(capsys, project.config, "restore", "config", bid, "--to", str(dest))
    assert r.code == 9
    assert "already exist" in r.err and "app.toml" in r.err and "--overwrite" in r.err
    assert edited.read_text() == "edited after the restore\n"
    assert not [p for p in dest.iterdir() if p.name.startswith(".posterity")]

    r = run(capsys, project.config, "restore", "config", bid, "--to", str(dest), "--overwrite")
    assert r.code == 0, r.err
    assert edited.read_text() == (base / "etc" / "posters-science" / "app.toml").read_text()
    assert "replaced" in r.out


def test_restore_of_one_path_only(project, tree, tmp_path, capsys):
    _, roots = tree
    bid = backup(capsys, project)["id"]
    dest = tmp_path / "one"
    sub = roots[1].lstrip("/")  # etc/nginx/sites-enabled
    r = run(
        capsys,
        project.config,
        "restore",
        "config",
        bid,
        "--to",
        str(dest),
        "--path",
        "/" + sub + "/",
    )
    assert r.code == 0, r.err
    restored = sorted(
        str(p.relative_to(dest)) for p in dest.rglob("*") if sub in str(p.relative_to(dest))
    )
    assert restored == [sub, f"{sub}/dangling", f"{sub}/posters"]
    assert not (dest / roots[0].lstrip("/")).exists()

    r = run(
        capsys,
        project.config,
        "restore",
        "config",
        bid,
        "--to",
        str(tmp_path / "none"),
        "--path",
        "etc/nope",
    )
    assert r.code == 2 and "no file at or under 'etc/nope'" in r.err
    assert not (tmp_path / "none").exists()


def test_restore_never_writes_through_a_symlink_in_the_target(project, tree, tmp_path, capsys):
    _, roots = tree
    bid = backup(capsys, project)["id"]
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    top = roots[0].lstrip("/").split("/")[0]  # the first component of every member name
    (dest / top).symlink_to(outside)
    for extra in ([], ["--overwrite"]):
        r = run(capsys, project.config, "restore", "config", bid, "--to", str(dest), *extra)
        assert r.code == 9, r.err
        assert "symlink" in r.err
        assert list(outside.iterdir()) == []


def test_missing_configured_path_fails_the_backup(tmp_path, tree, capsys):
    base, roots = tree
    p = files_project(
        tmp_path / "proj", f"file://{tmp_path / 'repo'}", [*roots, str(base / "etc" / "absent")]
    )
    assert run(capsys, p.config, "init").code == 0
    r = run(capsys, p.config, "backup", "config")
    assert r.code == 5
    assert "absent does not exist" in r.err
    assert json.loads(run(capsys, p.config, "--json", "list").out) == []


def test_file_vanishing_during_the_backup_is_skipped_with_a_warning(tmp_path):
    """The tar is written while it streams: a file removed after the walk started is skipped."""
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "aaa-large.bin").write_bytes(os.urandom(2 << 20))  # fills the pipe: the writer waits
    (folder / "zzz-vanishes.conf").write_text("gone soon\n")
    source = FilesSource("config", FilesConfig(kind="files", paths=[str(folder)]))
    source.check()
    art = next(iter(source.dump()))
    head = art.stream.read(1 << 20)  # the writer is inside aaa-large.bin: the folder was listed
    (folder / "zzz-vanishes.conf").unlink()
    data = head + art.stream.read()
    art.finish()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
    assert names == [str(folder).lstrip("/"), f"{str(folder).lstrip('/')}/aaa-large.bin"]
    facts = source.facts()
    assert any("zzz-vanishes.conf vanished" in w for w in facts["warnings"])
    assert [r["path"].rsplit("/", 1)[-1] for r in facts["files"]] == ["conf", "aaa-large.bin"]


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run a check as another user")
def test_unreadable_file_is_a_warning_but_unreadable_root_is_an_error():
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="posterity-perm-"))
    try:
        os.chmod(base, 0o755)
        (base / "open.conf").write_text("ok\n")
        (base / "root-only.conf").write_text("secret\n")
        os.chmod(base / "open.conf", 0o644)
        os.chmod(base / "root-only.conf", 0o600)
        closed = base / "closed"
        closed.mkdir(mode=0o700)
        out = _as_nobody(lambda: _scan_report(base))
        assert "Cannot read the configured path" in out["root"] and "root-only.conf" in out["root"]
        rel = str(base).lstrip("/")
        assert out["files"] == [rel, f"{rel}/closed", f"{rel}/open.conf"]
        assert any("root-only.conf" in w and "Permission denied" in w for w in out["warnings"])
        assert any("closed" in w and "cannot list" in w for w in out["warnings"])
    finally:
        shutil.rmtree(base)


def _scan_report(base: Path) -> dict:
    from posterity.errors import SourceError

    out: dict = {}
    s = FilesSource(
        "c", FilesConfig(kind="files", paths=[f"{base}/open.conf", f"{base}/root-only.conf"])
    )
    try:
        s.check()
    except SourceError as exc:
        out["root"] = exc.message
    s = FilesSource("c", FilesConfig(kind="files", paths=[str(base)]))
    s.check()
    s.content_digest()
    out["files"] = [r["path"] for r in s.facts()["files"]]
    out["warnings"] = s.facts()["warnings"]
    return out


def _as_nobody(fn) -> dict:
    """Run ``fn`` in a forked child as uid/gid 65534 (root reads everything); its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            data = json.dumps(fn())
        except BaseException as exc:
            data = json.dumps({"error": repr(exc)})
        finally:
            os.write(w, data.encode())
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        raw = fh.read()
    os.waitpid(pid, 0)
    out = json.loads(raw)
    assert "error" not in out, out["error"]
    return out


# -- crafted archives ---------------------------------------------------------------------


def _member(
    tar: tarfile.TarFile,
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    link: str = "",
) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o644
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def commit_archive(project, build) -> str:
    """Store a hand-made tar as a files backup, the way Posterity stores its own."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, "etc/ok.conf", data=b"harmless first member\n")
        build(tar)
    buf.seek(0)
    ctx = Context(load_config(project.config)[0])
    bid = new_backup_id()
    key = payload_key("config", bid, "files.tar")
    size, sha, raw = ctx.repo.write_payload(key, buf, ctx.stages)
    now = datetime.now(UTC).isoformat()
    ctx.repo.commit(
        Manifest(
            id=bid,
            source="config",
            kind="files",
            started_at=now,
            finished_at=now,
            posterity_version="test",
            host="test",
            artifacts=[
                ArtifactRecord("files.tar", key, "tar-pax", size, sha, raw, ctx.stages.specs())
            ],
        )
    )
    return bid


CRAFTED = {
    "dotdot": (lambda t, out: _member(t, "../outside/pwned", data=b"x"), "'..' would climb out"),
    "dotdot-inside": (
        lambda t, out: _member(t, "etc/../../outside/pwned", data=b"x"),
        "'..' would climb out",
    ),
    "absolute": (lambda t, out: _member(t, f"{out}/pwned", data=b"x"), "absolute names"),
    "symlink-relative-escape": (
        lambda t, out: _member(t, "etc/link", tarfile.SYMTYPE, link="../../outside"),
        "points outside",
    ),
    "symlink-chain-escape": (
        lambda t, out: (
            _member(t, "etc/here", tarfile.SYMTYPE, link="."),
            _member(t, "etc/up", tarfile.SYMTYPE, link="here/../.."),
        ),
        "points outside",
    ),
    "write-through-symlink": (
        lambda t, out: (
            _member(t, "etc/o", tarfile.SYMTYPE, link=str(out)),
            _member(t, "etc/o/pwned", data=b"x"),
        ),
        "is a symlink",
    ),
    "hardlink-dotdot": (
        lambda t, out: _member(t, "etc/h", tarfile.LNKTYPE, link="../outside/secret"),
        "'..' would climb out",
    ),
    "hardlink-absolute": (
        lambda t, out: _member(t, "etc/h", tarfile.LNKTYPE, link=f"{out}/secret"),
        "absolute names",
    ),
    "hardlink-through-symlink": (
        lambda t, out: (
            _member(t, "etc/o", tarfile.SYMTYPE, link=str(out)),
            _member(t, "etc/h", tarfile.LNKTYPE, link="etc/o/secret"),
        ),
        "is a symlink",
    ),
    "device": (lambda t, out: _member(t, "etc/null", tarfile.CHRTYPE), "device files"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_archive_cannot_escape_the_target(case, project, tmp_path, capsys):
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "restore"
    outside = sandbox / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("do not touch\n")
    build, message = CRAFTED[case]
    bid = commit_archive(project, lambda tar: build(tar, outside))
    before = sorted(str(p) for p in sandbox.rglob("*"))

    r = run(capsys, project.config, "restore", "config", bid, "--to", str(dest))
    assert r.code == 10, r.err
    assert "Refused" in r.err and message in r.err
    # Nothing new anywhere, not even the harmless first member.
    assert sorted(str(p) for p in sandbox.rglob("*")) == before
    assert (outside / "secret").read_text() == "do not touch\n"
    assert os.stat(outside / "secret").st_nlink == 1
    assert not Path("/outside/pwned").exists()


def test_crafted_archive_with_safe_links_restores(project, tmp_path, capsys):
    """The checks are not blanket refusals: links that stay inside restore fine."""
    bid = commit_archive(
        project,
        lambda tar: (
            _member(tar, "etc/rel", tarfile.SYMTYPE, link="ok.conf"),
            _member(tar, "etc/abs", tarfile.SYMTYPE, link="/etc/ok.conf"),
            _member(tar, "etc/hard", tarfile.LNKTYPE, link="etc/ok.conf"),
            _member(tar, "./etc//sub2/./x.conf", data=b"normalized\n"),
        ),
    )
    dest = tmp_path / "ok"
    r = run(capsys, project.config, "restore", "config", bid, "--to", str(dest))
    assert r.code == 0, r.err
    assert os.readlink(dest / "etc" / "rel") == "ok.conf"
    assert os.readlink(dest / "etc" / "abs") == "/etc/ok.conf"
    assert os.stat(dest / "etc" / "hard").st_ino == os.stat(dest / "etc" / "ok.conf").st_ino
    assert (dest / "etc" / "sub2" / "x.conf").read_text() == "normalized\n"


def test_exclude_patterns():
    from posterity.sources.files.scan import Excluder

    ex = Excluder(["*.tmp", "**/cache/**", "/etc/app/secret[0-9].env", "logs/", "nginx/*.bak"])
    assert ex("/etc/app/x.tmp", False) and ex("/deep/a/b.tmp", False)
    assert not ex("/etc/app/x.tmpl", False)
    assert ex("/etc/app/cache/blob", False) and ex("/etc/cache/deep/er", True)
    assert not ex("/etc/app/cache", True)  # the folder stays, its content goes
    assert ex("/etc/app/secret1.env", False) and not ex("/x/etc/app/secret1.env", False)
    assert not ex("/etc/app/secretA.env", False)
    assert ex("/etc/logs", True) and not ex("/etc/logs", False)  # trailing /: folders only
    assert ex("/etc/nginx/a.bak", False) and not ex("/etc/nginx/sub/a.bak", False)
