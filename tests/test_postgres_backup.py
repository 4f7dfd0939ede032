"""PostgreSQL logical backups end to end through the real command line, against a real
PostgreSQL 15 cluster and real object stores: back up, destroy, restore, compare."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from tests.support.project import make_project

from posterity.demo.sample_data import fingerprint


def drop_db(cluster, name: str) -> None:
    cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_exists(cluster, name: str) -> bool:
    return cluster.psql(f"select count(*) from pg_database where datname = '{name}'").strip() == "1"


@pytest.fixture
def project(tmp_path, sample_db):
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn}
    p.write_config()
    p.run("init", check=True)
    return p


@pytest.fixture
def s3_project(tmp_path, sample_db, s3_server, s3_bucket, r2_proxy):
    p = make_project(
        tmp_path / "proj",
        f"s3://{s3_bucket}/prod",
        endpoint=r2_proxy.endpoint,
        region=s3_server.region,
        access_key_id="${TEST_S3_KEY}",
        secret_access_key="${TEST_S3_SECRET}",
    )
    p.env = {"TEST_S3_KEY": s3_server.access_key, "TEST_S3_SECRET": s3_server.secret_key}
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn}
    p.write_config()
    p.run("init", check=True)
    return p


def backup_id(project) -> str:
    proc = project.run("--json", "backup", "db", check=True)
    return json.loads(proc.stdout)["backups"][0]["id"]


def test_backup_destroy_restore_is_identical(project, sample_db):
    original = fingerprint(sample_db.dsn)
    bid = backup_id(project)

    listed = json.loads(project.run("list", "--json", check=True).stdout)
    assert [b["id"] for b in listed] == [bid]

    manifest = json.loads(project.run("show", bid, "--json", check=True).stdout)
    kinds = {a["kind"] for a in manifest["artifacts"]}
    assert kinds == {"pg_dump-custom", "pg_dumpall-globals"}
    assert manifest["facts"]["row_counts"]["public.posters"] == sample_db.posters
    assert manifest["facts"]["server_version"].startswith("15")
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in manifest["artifacts"])

    # Destroy the original, then restore it under its own name.
    drop_db(sample_db.cluster, sample_db.name)
    project.run("restore", "db", "latest", "--to-database", sample_db.name, "--check-counts", check=True)
    assert fingerprint(sample_db.dsn) == original


def test_parallel_restore_through_r2_rules_proxy(s3_project, sample_db, r2_proxy, tmp_path):
    original = fingerprint(sample_db.dsn)
    backup_id(s3_project)
    target = f"{sample_db.name}_r"
    try:
        s3_project.run("restore", "db", "latest", "--to-database", target, "--jobs", "2", check=True)
        assert fingerprint(sample_db.cluster.dsn(target)) == original
    finally:
        drop_db(sample_db.cluster, target)
    assert r2_proxy.violations == []
    # The parallel restore staged its file and removed it afterwards.
    staging = s3_project.root / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_restore_refuses_non_empty_database_and_clean_replaces_it(project, sample_db):
    original = fingerprint(sample_db.dsn)
    backup_id(project)
    with psycopg.connect(sample_db.dsn, autocommit=True) as conn:
        conn.execute("delete from poster_authors where poster_id in (select id from posters where id % 2 = 0)")
        conn.execute("delete from posters where id % 2 = 0")
    changed = fingerprint(sample_db.dsn)
    assert changed != original

    refused = project.run("restore", "db", "latest", "--to-database", sample_db.name)
    assert refused.returncode == 9
    assert "not empty" in refused.stderr and "--clean" in refused.stderr
    assert fingerprint(sample_db.dsn) == changed  # untouched

    done = project.run("--json", "restore", "db", "latest", "--to-database", sample_db.name, "--clean", check=True)
    assert fingerprint(sample_db.dsn) == original
    # --clean keeps the replaced database, whole, under a new name until the user drops it.
    kept = json.loads(done.stdout)["kept"]
    assert kept.startswith(f"{sample_db.name}_before_") and fingerprint(sample_db.cluster.dsn(kept)) == changed
    drop_db(sample_db.cluster, kept)


def test_roles_come_back_with_with_roles(project, sample_db):
    cluster = sample_db.cluster
    role = f"reader_{sample_db.name[-6:]}"
    cluster.psql(f"create role {role} login")
    cluster.psql(f"grant select on all tables in schema public to {role}", dbname=sample_db.name)
    try:
        backup_id(project)
        drop_db(cluster, sample_db.name)
        cluster.psql(f"drop role {role}")
        project.run("restore", "db", "latest", "--to-database", sample_db.name, "--with-roles", check=True)
        assert cluster.psql(f"select count(*) from pg_roles where rolname = '{role}'").strip() == "1"
        granted = cluster.psql(
            f"select has_table_privilege('{role}', 'public.posters', 'select')", dbname=sample_db.name
        ).strip()
        assert granted == "t"
    finally:
        drop_db(cluster, sample_db.name)
        cluster.psql(f"drop role if exists {role}")


def fake_pg_tools(folder: Path, pg_dump_body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    real = Path("/usr/lib/postgresql")
    real_bin = sorted(real.glob("*/bin"))[-1]
    for tool in ("pg_dumpall", "pg_restore", "psql"):
        (folder / tool).symlink_to(real_bin / tool)
    script = folder / "pg_dump"
    script.write_text("#!/bin/sh\n" + pg_dump_body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_dump_failing_halfway_commits_nothing_and_keeps_earlier_backups(project, sample_db, tmp_path):
    good = backup_id(project)
    real_pg_dump = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))[-1]
    fake = fake_pg_tools(
        tmp_path / "bin",
        f'if [ "$1" = "--version" ]; then exec {real_pg_dump} --version; fi\n'
        f'{real_pg_dump} "$@" | head -c 20000\n'
        'echo "pg_dump: error: query failed: canceling statement due to lock timeout" >&2\nexit 1\n',
    )
    project.sources["db"]["bin_dir"] = str(fake)
    project.write_config()
    failed = project.run("backup", "db")
    assert failed.returncode == 5
    assert "lock timeout" in failed.stderr and "Nothing was committed" in failed.stderr
    listed = json.loads(project.run("list", "--json", check=True).stdout)
    assert [b["id"] for b in listed] == [good]
    # No payloads of the failed backup were left behind.
    repo = Path(project.repo_url.removeprefix("file://"))
    dirs = sorted(p.name for p in (repo / "backups" / "db").iterdir())
    assert dirs == [good]


def test_pg_dump_older_than_server_is_refused(project, tmp_path):
    fake = fake_pg_tools(tmp_path / "bin", 'echo "pg_dump (PostgreSQL) 11.22"\n')
    project.sources["db"]["bin_dir"] = str(fake)
    project.write_config()
    proc = project.run("backup", "db")
    assert proc.returncode == 5
    assert "older than the server" in proc.stderr and "postgresql-client-15" in proc.stderr


def test_unreachable_database_and_unknown_user(project, sample_db, tmp_path):
    project.sources["db"]["dsn"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    project.write_config()
    proc = project.run("backup", "db")
    assert proc.returncode == 5
    assert "Cannot connect to PostgreSQL at postgres@127.0.0.1:1/nowhere" in proc.stderr

    port = sample_db.cluster.port
    project.sources["db"]["dsn"] = f"postgresql://nobody_here@127.0.0.1:{port}/{sample_db.name}"
    project.write_config()
    proc = project.run("backup", "db")
    assert proc.returncode == 5
    assert "does not exist" in proc.stderr


def test_repository_errors(tmp_path, sample_db):
    p = make_project(tmp_path / "p", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn}
    p.write_config()
    proc = p.run("backup", "db")
    assert proc.returncode == 3 and "posterity init" in proc.stderr
    p.run("init", check=True)
    again = p.run("init")
    assert again.returncode == 3 and "already exists" in again.stderr
    missing = p.run("restore", "db", "latest", "--to-database", "x")
    assert missing.returncode == 3 and "no backup" in missing.stderr.lower()


def test_bucket_missing_and_bad_credentials(tmp_path, sample_db, s3_server):
    p = make_project(tmp_path / "p", "s3://bucket-that-is-not-there/x", endpoint=s3_server.endpoint,
                     region=s3_server.region, access_key_id=s3_server.access_key,
                     secret_access_key=s3_server.secret_key)
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn}
    p.write_config()
    proc = p.run("init")
    assert proc.returncode == 4 and "does not exist" in proc.stderr and "Create the bucket" in proc.stderr

    s3_server.create_bucket("posterity-creds-test")
    p.repo_url = "s3://posterity-creds-test/x"
    p.repo_extra["secret_access_key"] = "definitely-wrong-secret"
    p.write_config()
    proc = p.run("init")
    assert proc.returncode == 4 and "refused the credentials" in proc.stderr
    assert "definitely-wrong-secret" not in proc.stderr + proc.stdout


def test_key_problems_on_restore(project, sample_db, tmp_path):
    backup_id(project)
    other = make_project(tmp_path / "other", project.repo_url)
    wrong = project.run("restore", "db", "latest", "--to-database", "k1", "--identity", str(other.key))
    assert wrong.returncode == 7 and "is encrypted to the identity given" in wrong.stderr
    assert not db_exists(sample_db.cluster, "k1")
    missing = project.run("restore", "db", "latest", "--to-database", "k2", "--identity", str(tmp_path / "nope.txt"))
    assert missing.returncode == 7 and "does not exist" in missing.stderr
    assert not db_exists(sample_db.cluster, "k2")


def corrupt(project, mode: str) -> str:
    repo = Path(project.repo_url.removeprefix("file://"))
    [payload] = list(repo.glob("backups/db/*/*.pgdump.zst.age"))
    data = bytearray(payload.read_bytes())
    payload.chmod(0o644)
    if mode == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        data = data[: len(data) // 2]
    payload.write_bytes(bytes(data))
    return str(payload.relative_to(repo))


@pytest.mark.parametrize("mode,expected", [("flip", "does not match its manifest"), ("truncate", "is truncated")])
def test_damaged_payload_is_named_and_partial_database_dropped(project, sample_db, mode, expected):
    backup_id(project)
    key = corrupt(project, mode)
    target = f"{sample_db.name}_bad"
    proc = project.run("restore", "db", "latest", "--to-database", target)
    assert proc.returncode == 6, proc.stderr
    assert key in proc.stderr and expected in proc.stderr
    assert "was dropped" in proc.stderr
    assert not db_exists(sample_db.cluster, target)


def test_secrets_never_reach_manifest_output_or_audit(tmp_path, sample_db, s3_server, s3_bucket):
    password = "pw-Zq81-very-secret"
    cluster = sample_db.cluster
    cluster.psql(f"create role secret_user login superuser password '{password}'")
    try:
        p = make_project(tmp_path / "p", f"s3://{s3_bucket}/sec", endpoint=s3_server.endpoint,
                         region=s3_server.region, access_key_id=s3_server.access_key,
                         secret_access_key="${S3_SECRET}")
        p.env = {"S3_SECRET": s3_server.secret_key, "DB_PASSWORD": password}
        p.sources["db"] = {"kind": "postgres",
                           "dsn": f"postgresql://secret_user:${{DB_PASSWORD}}@127.0.0.1:{cluster.port}/{sample_db.name}"}
        p.write_config()
        outputs = [p.run("init", check=True), p.run("-v", "backup", "db", check=True),
                   p.run("show", "latest", "--json", check=True), p.run("list", check=True)]
        # A failing run prints its error: still no secret.
        p.sources["db"]["dsn"] = f"postgresql://secret_user:${{DB_PASSWORD}}@127.0.0.1:1/{sample_db.name}"
        p.write_config()
        outputs.append(p.run("backup", "db"))
        from posterity.storage.s3 import S3Store

        store = S3Store(s3_bucket, "sec", endpoint=s3_server.endpoint, region=s3_server.region,
                        access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key)
        texts = [o.stdout + o.stderr for o in outputs]
        for info in store.list(""):
            if info.key.endswith(".json"):
                texts.append(store.get_bytes(info.key).decode())
        assert any("manifest" in t or "artifacts" in t for t in texts)
        for t in texts:
            assert password not in t
            assert s3_server.secret_key not in t
    finally:
        cluster.psql("drop role if exists secret_user")


@pytest.mark.skipif(not (shutil.which("age") and shutil.which("zstd")), reason="age/zstd CLI not installed")
def test_by_hand_restore_with_standard_tools(project, sample_db, tmp_path):
    """README's recovery path without Posterity: age -d | zstd -d, then pg_restore."""
    original = fingerprint(sample_db.dsn)
    backup_id(project)
    manifest = json.loads(project.run("show", "latest", "--json", check=True).stdout)
    repo = Path(project.repo_url.removeprefix("file://"))
    [dump] = [a for a in manifest["artifacts"] if a["kind"] == "pg_dump-custom"]
    out = tmp_path / "db.pgdump"
    pipeline = f'cat "{repo / dump["key"]}" | age -d -i "{project.key}" | zstd -d > "{out}"'
    subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True)
    target = f"{sample_db.name}_hand"
    cluster = sample_db.cluster
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    try:
        subprocess.run([str(bin_dir / "createdb"), target], check=True, env=env)
        subprocess.run([str(bin_dir / "pg_restore"), "--exit-on-error", "-j", "2", "-d", target, str(out)],
                       check=True, env=env)
        assert fingerprint(cluster.dsn(target)) == original
    finally:
        drop_db(cluster, target)
