"""An "unchanged" files backup never reuses a damaged payload; verify names all it breaks.

Found (issue 11.1): after one flipped byte in the stored tar, the next backup printed
"unchanged since …", exited 0 and committed a manifest naming the damaged object, so
`restore latest` failed (exit 6) — and so did every later backup until a file changed,
while `verify` counted one problem. Now the reused payload is read back (sha256 and size
against its manifest) before reuse; a damaged one is stored again, and `verify` names
every backup and restore point that references a damaged object.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.reliability.harness import Setup


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_damaged_payload_is_stored_again_and_verify_names_every_backup_and_point(
    tmp_path, module_db
):
    files = tmp_path / "etc"
    (files / "sub").mkdir(parents=True)
    for i in range(10):
        (files / "sub" / f"f{i}.conf").write_text(f"setting_{i} = {i * 7}\n" * 40)
    s = Setup(tmp_path / "env", f"file://{tmp_path / 'repo'}", module_db.dsn)
    s.more_sources = f'[sources.etc]\nkind = "files"\npaths = ["{files}"]\n'
    s.write_config()
    s.init()

    r = s.run("backup", "--json")  # every source: one restore point holding etc's first backup
    assert r.code == 0, r
    point = r.json()["point"]["id"]
    first = next(b for b in r.json()["backups"] if b["source"] == "etc")
    r = s.run("backup", "etc", "--json")
    assert r.code == 0, r
    second = r.json()["backups"][0]
    assert second["unchanged_from"] == first["id"]  # reused: the payload is intact
    (payload,) = [a["key"] for a in first["artifacts"]]

    path = tmp_path / "repo" / payload  # one flipped byte in the stored tar
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    r = s.run("backup", "etc", "--json")
    assert r.code == 0, r
    third = r.json()["backups"][0]
    assert third["unchanged_from"] is None, r  # was: reused the damaged object
    assert third["artifacts"][0]["key"] != payload
    assert f"the previous payload {payload} does not match its manifest" in r.err, r

    dest = tmp_path / "restored"  # the newest backup restores exactly
    r = s.run("restore", "etc", "latest", "--to", str(dest))
    assert r.code == 0, r
    assert _tree(dest / files.relative_to("/")) == _tree(files)

    r = s.run("verify", "--read-data", "--json")
    assert r.code == 6, r
    (finding,) = r.json()["findings"]
    assert finding["key"] == payload and finding["problem"] == "checksum", finding
    assert finding["backups_affected"] == sorted([f"etc/{first['id']}", f"etc/{second['id']}"]), finding
    assert finding["points_affected"] == [point], finding
    assert "It breaks backups etc/" in finding["message"] and point in finding["message"], finding

    # Checking only the newest backup of etc: clean (it does not use the damaged object);
    # checking the second one alone still names both backups that break. (By id: `--latest`
    # picks by id, and ids taken in the same second sort by their random suffix.)
    r = s.run("verify", third["id"], "--source", "etc", "--read-data")
    assert r.code == 0, r
    r = s.run("verify", second["id"], "--source", "etc", "--read-data")
    assert r.code == 6, r
    assert f"etc/{first['id']}" in r.err and f"etc/{second['id']}" in r.err and point in r.err, r
