"""Split (parallel) logical backups: a schema archive plus data archives from one snapshot,
restored in parallel, by Posterity and by hand, against real PostgreSQL and S3."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from tests.support.project import SPLIT, make_project

from posterity.demo.sample_data import fingerprint
from posterity.sources.postgres.parallel_dump import Part, data_argv, plan_parts, quote_pattern


def add_awkward_objects(dsn: str) -> bytes:
    """Objects a per-table split could lose: a quoted name with pattern characters, a large
    object, a free-standing sequence, a materialized view, a foreign key across archives."""
    blob = os.urandom(100_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('create table "Odd*Name.x""q" (id int primary key, note text)')
        conn.execute('insert into "Odd*Name.x""q" select g, md5(g::text) from generate_series(1, 500) g')
        conn.execute("create table empty_one (id int)")
        conn.execute("create sequence free_seq start 40")
        conn.execute("select nextval('free_seq'), nextval('free_seq')")
        conn.execute('create table child (id int primary key, odd int references "Odd*Name.x""q"(id))')
        conn.execute("insert into child select g, g from generate_series(1, 300) g")
        conn.execute('create materialized view odd_mv as select count(*) as n from "Odd*Name.x""q"')
        with conn.transaction():
            oid = conn.execute("select lo_from_bytea(0, %s)", (blob,)).fetchone()[0]  # type: ignore[index]
            conn.execute("create table blobs (id int, lo oid)")
            conn.execute("insert into blobs values (1, %s)", (oid,))
        conn.execute("analyze")  # the planner sizes tables from pg_class.relpages
    return blob


def read_blob(dsn: str) -> bytes:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select lo_get(lo) from blobs where id = 1").fetchone()
        assert row is not None
        return bytes(row[0])


def drop_db(cluster, name: str) -> None:
    cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def s3_split(tmp_path, sample_db, s3_server, s3_bucket, r2_proxy):
    p = make_project(
        tmp_path / "proj",
        f"s3://{s3_bucket}/split",
        endpoint=r2_proxy.endpoint,
        region=s3_server.region,
        access_key_id="${TEST_S3_KEY}",
        secret_access_key="${TEST_S3_SECRET}",
    )
    p.env = {"TEST_S3_KEY": s3_server.access_key, "TEST_S3_SECRET": s3_server.secret_key}
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn, **SPLIT}
    p.write_config()
    p.run("init", check=True)
    return p


def backup(project, *args: str) -> dict:
    out = json.loads(project.run("--json", "backup", "db", *args, check=True).stdout)["backups"][0]
    return json.loads(project.run("show", out["id"], "--json", check=True).stdout)


def test_split_backup_restores_identically_through_r2_rules(s3_split, sample_db, r2_proxy):
    blob = add_awkward_objects(sample_db.dsn)
    original = fingerprint(sample_db.dsn)
    manifest = backup(s3_split)
    kinds = [a["kind"] for a in manifest["artifacts"]]
    assert kinds.count("pg_dump-custom-schema") == 1 and "pg_dump-custom" not in kinds
    data = [a for a in manifest["artifacts"] if a["kind"] == "pg_dump-custom-data"]
    assert len(data) >= 3 and sum(1 for a in data if a["facts"].get("rest")) == 1
    assert manifest["facts"]["layout"] == "split" and manifest["facts"]["row_counts"]["public.posters"] == sample_db.posters

    drop_db(sample_db.cluster, sample_db.name)
    r = s3_split.run("--json", "restore", "db", "latest", "--to-database", sample_db.name, "--jobs", "2",
                     "--check-counts", check=True)
    assert json.loads(r.stdout)["archives"] == len(data) + 1
    assert fingerprint(sample_db.dsn) == original
    assert read_blob(sample_db.dsn) == blob
    assert r2_proxy.violations == []
    staging = s3_split.root / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []  # the staged schema archive is gone


def test_split_backup_by_hand_with_show_commands(local_split, sample_db, tmp_path):
    """`posterity show`'s by-hand commands, run as printed with age, zstd and pg_restore only."""
    blob = add_awkward_objects(sample_db.dsn)
    original = fingerprint(sample_db.dsn)
    manifest = backup(local_split)
    repo = Path(local_split.repo_url.removeprefix("file://"))
    target = f"{sample_db.name}_hand"
    cluster = sample_db.cluster
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres",
           "PATH": f"{bin_dir}:{os.environ['PATH']}", "REPO": str(repo)}
    script = "\n".join(
        c.replace('rclone cat "$REPO/', 'cat "$REPO/').replace("key.txt", str(local_split.key)).replace("NEWDB", target)
        for c in manifest["restore_by_hand"]
        if "psql -X -d postgres" not in c  # the roles exist already in this cluster
    )
    assert "for k in" in script and "--section=post-data" in script
    try:
        subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], check=True, env=env, cwd=tmp_path)
        assert fingerprint(cluster.dsn(target)) == original
        assert read_blob(cluster.dsn(target)) == blob
    finally:
        drop_db(cluster, target)


def test_split_backup_verify_read_data_and_clean_replaces(local_split, sample_db):
    backup(local_split)
    report = json.loads(local_split.run("--json", "verify", "--read-data", check=True).stdout)
    checked = [v for k, v in report["checked"].items() if ".pgdump." in k]
    assert len(checked) >= 4 and all(v["content"] == "pg_restore read the whole archive" for v in checked)
    assert sum(v["table_data"] for v in checked) >= 5  # every table's rows are in some data archive
    original = fingerprint(sample_db.dsn)
    with psycopg.connect(sample_db.dsn, autocommit=True) as conn:
        conn.execute("delete from poster_authors where poster_id in (select id from posters where id % 2 = 0)")
        conn.execute("delete from posters where id % 2 = 0")
    assert fingerprint(sample_db.dsn) != original
    r = local_split.run("--json", "restore", "db", "latest", "--to-database", sample_db.name, "--clean", check=True)
    assert fingerprint(sample_db.dsn) == original
    kept = json.loads(r.stdout)["kept"]
    drop_db(sample_db.cluster, kept)


def test_small_database_or_one_job_keeps_one_archive(local_split, sample_db):
    kinds = {a["kind"] for a in backup(local_split, "--jobs", "1")["artifacts"]}
    assert kinds == {"pg_dump-custom", "pg_dumpall-globals"}


def test_plan_parts_batches_small_tables_and_keeps_a_rest():
    tables = [("s", "big", 900), ("s", "mid", 300), ("s", "a", 40), ("s", "b", 40), ("s", "c", 30), ("s", "e", 0)]
    assert plan_parts(tables, 2000, 1, 0) == []  # one job: one archive
    assert plan_parts(tables, 50, 4, 100) == []  # smaller than a part: one archive
    parts = plan_parts(tables, 2000, 2, 100)
    assert [p.tables for p in parts] == [[("s", "big")], [("s", "mid")], None]
    parts = plan_parts(tables, 2000, 8, 50)
    assert [p.name for p in parts][-1] == "data-rest"
    assert [("s", "a"), ("s", "b")] in [p.tables for p in parts]
    rest = parts[-1]
    argv = data_argv(["pg_dump"], rest, parts)
    assert '--exclude-table-data="s"."big"' in argv and '--exclude-table-data="s"."c"' not in argv


def test_quote_pattern_is_exact():
    assert quote_pattern("public", 'Odd*Name.x"q') == '"public"."Odd*Name.x""q"'
    assert isinstance(Part("x", None, 0), Part)


def test_all_archives_share_one_snapshot_under_concurrent_writes(local_split, sample_db, tmp_path):
    """Each pg_dump starts late (a wrapper sleeps first) while parent+child rows are written in
    one transaction each: the archives must still describe one moment, so the restored
    counts match the snapshot's, the foreign key can be created, and parents == children."""
    import threading

    real = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dumpall", "pg_restore", "psql"):
        (bin_dir / tool).symlink_to(real / tool)
    (bin_dir / "pg_dump").write_text(
        f'#!/bin/sh\ncase "$*" in *--section=data*) sleep 1;; esac\nexec {real / "pg_dump"} "$@"\n'
    )
    (bin_dir / "pg_dump").chmod(0o755)
    local_split.sources["db"]["bin_dir"] = str(bin_dir)
    local_split.write_config()
    with psycopg.connect(sample_db.dsn, autocommit=True) as conn:
        conn.execute("create table parent (id int primary key, pad text)")
        conn.execute("create table kid (id serial primary key, parent_id int references parent(id), pad text)")
        conn.execute("insert into parent select g, repeat('p', 200) from generate_series(1, 4000) g")
        conn.execute("insert into kid (parent_id, pad) select g, repeat('k', 200) from generate_series(1, 4000) g")
        conn.execute("analyze")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with psycopg.connect(sample_db.dsn, autocommit=True) as conn:
            n = 100_000
            while not stop.is_set():
                with conn.transaction():
                    conn.execute("insert into parent values (%s, 'x')", (n,))
                    conn.execute("insert into kid (parent_id, pad) values (%s, 'x')", (n,))
                n += 1
                written[0] += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        manifest = backup(local_split)
    finally:
        stop.set()
        t.join(timeout=30)
    data = [a for a in manifest["artifacts"] if a["kind"] == "pg_dump-custom-data"]
    homes = {tbl: a["name"] for a in data for tbl in a["facts"].get("tables", [])}
    assert homes["public.parent"] != homes["public.kid"]  # the two tables were dumped apart
    assert written[0] > 10  # rows really were written while the pg_dumps ran
    counts = manifest["facts"]["row_counts"]
    assert counts["public.parent"] == counts["public.kid"]
    target = f"{sample_db.name}_snap"
    try:
        local_split.run("restore", "db", "latest", "--to-database", target, "--check-counts", check=True)
        with psycopg.connect(sample_db.cluster.dsn(target)) as conn:
            row = conn.execute("select (select count(*) from parent), (select count(*) from kid)").fetchone()
        assert row == (counts["public.parent"], counts["public.kid"])
    finally:
        drop_db(sample_db.cluster, target)


def test_split_backup_in_a_restore_point_and_a_drill(local_split, sample_db):
    """A restore point of a split backup restores whole; a drill on it restores and counts."""
    add_awkward_objects(sample_db.dsn)
    original = fingerprint(sample_db.dsn)
    local_split.sources["db"]["drill"] = "scratch-db"
    local_split.write_config()
    local_split.run("backup", check=True)  # no names: a restore point of every source
    point = json.loads(local_split.run("--json", "list", "--points", check=True).stdout)[0]
    manifest = json.loads(local_split.run("show", point["backups"][0]["backup"], "--json", check=True).stdout)
    assert manifest["facts"]["layout"] == "split"
    drop_db(sample_db.cluster, sample_db.name)
    local_split.run("restore", "--point", "latest", "--to-database", sample_db.name, check=True)
    assert fingerprint(sample_db.dsn) == original

    drill = json.loads(local_split.run("--json", "drill", "--source", "db", check=True).stdout)["drills"][0]
    assert drill["ok"], drill
    [counts] = [c for c in drill["checks"] if c["name"] == "row counts"]
    assert counts["ok"] and counts["value"] == sum(manifest["facts"]["row_counts"].values())


def test_a_missing_data_archive_fails_the_restore_and_drops_the_new_database(local_split, sample_db):
    manifest = backup(local_split)
    repo = Path(local_split.repo_url.removeprefix("file://"))
    data = [a for a in manifest["artifacts"] if a["kind"] == "pg_dump-custom-data"]
    victim = data[-1]["key"]
    (repo / victim).unlink()
    target = f"{sample_db.name}_gone"
    r = local_split.run("restore", "db", "latest", "--to-database", target, "--jobs", "2")
    assert r.returncode == 4, r.stderr
    assert victim in r.stderr and "was dropped" in r.stderr
    assert sample_db.cluster.psql(f"select count(*) from pg_database where datname = '{target}'").strip() == "0"


def test_backup_timeout_ends_a_split_backup_with_stalled_pg_dumps(local_split, sample_db, tmp_path):
    """Every data pg_dump stalls (a wrapper sleeps first): backup_timeout ends all of them,
    nothing is committed and no payload is left."""
    import time

    add_awkward_objects(sample_db.dsn)
    real = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dumpall", "pg_restore", "psql"):
        (bin_dir / tool).symlink_to(real / tool)
    (bin_dir / "pg_dump").write_text(
        f'#!/bin/sh\ncase "$*" in *--section=data*) sleep 60 >/dev/null;; esac\nexec {real / "pg_dump"} "$@"\n'
    )
    (bin_dir / "pg_dump").chmod(0o755)
    local_split.sources["db"]["bin_dir"] = str(bin_dir)
    local_split.write_config()
    local_split.config.write_text(local_split.config.read_text().replace("[general]\n", '[general]\nbackup_timeout = "3s"\n'))
    t0 = time.monotonic()
    r = local_split.run("backup", "db", timeout=60)
    assert time.monotonic() - t0 < 30, "the stalled pg_dumps were waited out"
    assert r.returncode == 14, r.stderr
    assert "nothing was committed" in r.stderr
    repo = Path(local_split.repo_url.removeprefix("file://"))
    leftovers = list((repo / "backups").rglob("*.age")) if (repo / "backups").exists() else []
    assert leftovers == []  # the payloads already written were removed
    assert json.loads(local_split.run("--json", "list", check=True).stdout) == []
