"""The zstd level: new backups default to level 1 (measured a third less CPU than 3, issue #16),
the manifest records the level each backup was written with, and backups written at the old
default (3) restore exactly under the new one; the lean WAL entry uses the same default."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.project import make_project

from posterity.config.plain import ZSTD_LEVEL_DEFAULT
from posterity.demo.sample_data import fingerprint


def _zstd_levels(project, backup_id: str) -> set[int]:
    """The zstd level every artifact of the backup records (the stage spec a restore follows)."""
    manifest = project.root / "repo" / "backups" / "db" / backup_id / "manifest.json"
    artifacts = json.loads(manifest.read_text())["artifacts"]
    return {s["level"] for a in artifacts for s in a["stages"] if s["name"] == "zstd"}


def _backup(project) -> str:
    return json.loads(project.run("--json", "backup", "db", check=True).stdout)["backups"][0]["id"]


def test_default_level_is_1_and_a_level_3_backup_still_restores(tmp_path, sample_db):
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'proj' / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn}
    p.write_config()
    text = p.config.read_text()
    p.config.write_text(text.replace("[encryption]\n", "[encryption]\nzstd_level = 3\n", 1))
    p.run("init", check=True)
    original = fingerprint(sample_db.dsn)
    old = _backup(p)  # written as every backup was before the default changed
    assert _zstd_levels(p, old) == {3}

    p.config.write_text(text)  # no zstd_level: the default
    new = _backup(p)
    assert ZSTD_LEVEL_DEFAULT == 1
    assert _zstd_levels(p, new) == {1}

    for backup_id, db in ((old, "r_level3"), (new, "r_level1")):
        sample_db.cluster.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        try:
            p.run("restore", "db", backup_id, "--to-database", db, "--check-counts", check=True)
            assert fingerprint(sample_db.cluster.dsn(db)) == original
        finally:
            sample_db.cluster.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


PROBE = r"""
import json, sys
from pathlib import Path
from posterity.cli.walfast import LeanContext
print(json.dumps({"level": LeanContext(Path(sys.argv[1])).stages.zstd_level}))
"""


def test_the_lean_wal_entry_uses_the_same_default_level(tmp_path):
    cfg = tmp_path / "posterity.toml"
    cfg.write_text(
        f'[repository]\nurl = "file://{tmp_path}/repo"\n[encryption]\n'
        'recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]\n'
        '[sources.pitr]\nkind = "postgres-physical"\ndsn = "postgresql://u@localhost/postgres"\n'
    )
    out = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"level": ZSTD_LEVEL_DEFAULT}
