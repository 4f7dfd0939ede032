"""Logical restores that are right on a fresh server and never make the target worse
(issue 12, items 1–6): through the real command line, against real PostgreSQL 15 clusters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.support.project import Project, make_project

from posterity.demo.sample_data import fingerprint
from posterity.pgcluster import TempCluster


def drop_db(cluster: TempCluster, name: str) -> None:
    cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def one(dsn: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def project_for(tmp_path: Path, dsn: str, *, with_globals: bool = False) -> Project:
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": dsn, "globals": with_globals}
    p.write_config()
    p.run("init", check=True)
    p.run("backup", "db", check=True)
    return p


def restore(p: Project, *args: str):
    return p.run("--json", "restore", "db", "latest", *args)


@pytest.fixture
def new_db(pg_cluster: TempCluster) -> Iterator[str]:
    name = f"src_{uuid.uuid4().hex[:10]}"
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        drop_db(pg_cluster, name)


@pytest.fixture(scope="module")
def ascii_cluster() -> Iterator[TempCluster]:
    """A second server whose default is SQL_ASCII / C, as PostgreSQL's own upgrade tests use."""
    cluster = TempCluster(encoding="SQL_ASCII", locale="C")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


# -- item 3: --clean keeps the old database whole until the new one is complete ---------------


def test_clean_restores_beside_and_switches_names_keeping_the_old_database(tmp_path, sample_db):
    cluster = sample_db.cluster
    original = fingerprint(sample_db.dsn)
    p = project_for(tmp_path, sample_db.dsn)
    with psycopg.connect(sample_db.dsn, autocommit=True) as conn:
        conn.execute("delete from poster_authors where poster_id in (select id from posters where id % 2 = 0)")
        conn.execute("delete from posters where id % 2 = 0")
        # A view on a restored table, made after the backup: pg_restore --clean cannot drop the table.
        conn.execute("create view later_view as select id from posters")
    changed = fingerprint(sample_db.dsn)
    busy = psycopg.connect(sample_db.dsn, autocommit=True)  # a client still connected to the old one
    stale = f"{sample_db.name}_restoring_abc123"  # left by a killed --clean restore: named, not dropped
    cluster.psql(f'create database "{stale}"')
    kept = None
    try:
        proc = restore(p, "--to-database", sample_db.name, "--clean")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        kept = result["kept"]
        assert kept.startswith(f"{sample_db.name}_before_")
        assert fingerprint(sample_db.dsn) == original
        assert one(sample_db.dsn, "select count(*) from pg_views where viewname = 'later_view'") == 0
        # The old database is whole under its new name, view and all.
        assert fingerprint(cluster.dsn(kept)) == changed
        assert one(cluster.dsn(kept), "select count(*) from later_view") == one(cluster.dsn(kept),
                                                                               "select count(*) from posters")
        assert any(kept in w for w in result["warnings"])
        assert any(stale in w and "did not finish" in w for w in result["warnings"])
        assert [d for d in cluster.psql("select datname from pg_database").split() if "_restoring_" in d] == [stale]
    finally:
        busy.close()
        drop_db(cluster, stale)
        if kept:
            drop_db(cluster, kept)


def test_failed_clean_restore_leaves_the_target_untouched(tmp_path, sample_db):
    cluster = sample_db.cluster
    p = project_for(tmp_path, sample_db.dsn)
    cluster.psql("create view later_view as select id from posters", dbname=sample_db.name)
    before = fingerprint(sample_db.dsn)
    # Damage the stored dump: the restore into the new database fails part-way.
    manifest = json.loads(p.run("--json", "show", "latest", check=True).stdout)
    dump = next(a for a in manifest["artifacts"] if a["kind"] == "pg_dump-custom")
    path = tmp_path / "repo" / dump["key"]
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = restore(p, "--to-database", sample_db.name, "--clean")
    assert proc.returncode != 0
    assert "was not changed" in proc.stdout + proc.stderr
    assert fingerprint(sample_db.dsn) == before
    names = cluster.psql("select datname from pg_database").split()
    assert not [d for d in names if d.startswith(f"{sample_db.name}_")]  # no _restoring_/_before_ copy


# -- item 4: --with-roles never revives a revoked credential --------------------------------


def test_with_roles_leaves_existing_roles_alone_unless_overwrite_roles(tmp_path, sample_db):
    cluster = sample_db.cluster
    role = f"app_owner_{uuid.uuid4().hex[:6]}"
    missing = f"gone_{uuid.uuid4().hex[:6]}"
    cluster.psql(f"create role {role} login password 'old-secret'")
    cluster.psql(f"create role {missing} login")
    cluster.psql(f'alter database "{sample_db.name}" owner to {role}')
    target = f"{sample_db.name}_r"
    try:
        p = project_for(tmp_path, sample_db.dsn, with_globals=True)
        cluster.psql(f"alter role {role} password 'new-secret' nologin")
        cluster.psql(f"drop role {missing}")
        rotated = cluster.psql(f"select rolpassword from pg_authid where rolname = '{role}'").strip()

        proc = restore(p, "--to-database", target, "--with-roles")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert role in result["roles"]["skipped"] and missing in result["roles"]["created"]
        assert any(role in w and "left as they are" in w for w in result["warnings"])
        row = cluster.psql(f"select rolcanlogin, rolpassword from pg_authid where rolname = '{role}'").strip()
        assert row == f"f|{rotated}"
        assert cluster.psql(f"select count(*) from pg_roles where rolname = '{missing}'").strip() == "1"
        # With --with-roles the database gets the backup's owner (item 2).
        assert cluster.psql(f"select datdba::regrole from pg_database where datname = '{target}'").strip() == role

        drop_db(cluster, target)
        proc = restore(p, "--to-database", target, "--with-roles", "--overwrite-roles")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert cluster.psql(f"select rolcanlogin from pg_roles where rolname = '{role}'").strip() == "t"
    finally:
        drop_db(cluster, target)
        cluster.psql(f'alter database "{sample_db.name}" owner to postgres')
        cluster.psql(f"drop role if exists {role}")
        cluster.psql(f"drop role if exists {missing}")


# -- item 5: a type, a function or a large object makes a database non-empty -----------------


@pytest.mark.parametrize("thing", [
    "create type mood as enum ('ok', 'sad')",
    "create function f() returns int language sql as 'select 1'",
    "select lo_from_bytea(0, 'blob')",
])
def test_a_database_with_only_a_type_function_or_large_object_is_not_empty(tmp_path, sample_db, thing):
    cluster = sample_db.cluster
    p = project_for(tmp_path, sample_db.dsn)
    target = f"{sample_db.name}_t"
    cluster.psql(f'create database "{target}" template template0')
    try:
        cluster.psql(thing, dbname=target)
        proc = restore(p, "--to-database", target)
        assert proc.returncode == 9, proc.stdout + proc.stderr
        assert "not empty" in proc.stdout
        assert one(cluster.dsn(target), "select count(*) from pg_class where relname = 'posters'") == 0
        assert one(cluster.dsn(target), "select count(*) from pg_extension") == 1  # plpgsql only
    finally:
        drop_db(cluster, target)


# -- item 2: database-level settings, comment and privileges come back ------------------------


def test_database_settings_comment_and_privileges_are_restored(tmp_path, pg_cluster, new_db):
    role = f"viewer_{uuid.uuid4().hex[:6]}"
    pg_cluster.psql(f"create role {role}")
    target = f"{new_db}_r"
    try:
        for stmt in (f"alter database {new_db} set bytea_output = 'escape'",
                     f"alter database {new_db} set timezone_abbreviations = 'Australia'",
                     f"alter database {new_db} set lc_monetary = 'C'",
                     f"comment on database {new_db} is 'posters, it''s ours'",
                     f"grant connect, temporary on database {new_db} to {role}"):
            pg_cluster.psql(stmt)
        pg_cluster.psql("create table t(b bytea); insert into t values ('\\x01ff')", dbname=new_db)
        p = project_for(tmp_path, pg_cluster.dsn(new_db))
        proc = restore(p, "--to-database", target)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        dsn = pg_cluster.dsn(target)
        assert one(dsn, "show bytea_output") == "escape"
        assert one(dsn, "show timezone_abbreviations") == "Australia"
        assert one(dsn, "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                   (target,)) == "posters, it's ours"
        assert one(dsn, "select has_database_privilege(%s, %s, 'temporary')", (role, target)) is True
    finally:
        drop_db(pg_cluster, target)
        drop_db(pg_cluster, new_db)
        pg_cluster.psql(f"drop role if exists {role}")


# -- item 1: created like the backup's database, on a server with other defaults ---------------


def test_icu_collation_restores_onto_a_sql_ascii_server(tmp_path, pg_cluster, new_db, ascii_cluster):
    pg_cluster.psql("create collation und_icu (provider = icu, locale = 'und'); "
                    "create table words(w text collate und_icu); insert into words values ('b'), ('a'), ('C')",
                    dbname=new_db)
    p = project_for(tmp_path, pg_cluster.dsn(new_db))
    proc = restore(p, "--to-database", "words_copy", "--target-dsn", ascii_cluster.dsn())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dsn = ascii_cluster.dsn("words_copy")
    assert one(dsn, "select pg_encoding_to_char(encoding) from pg_database where datname = 'words_copy'") == "UTF8"
    assert one(dsn, "select string_agg(w, '' order by w) from words") == "abC"


def test_latin1_database_is_restored_as_latin1(tmp_path, pg_cluster):
    name = f"latin_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f"create database {name} template template0 encoding 'LATIN1' locale 'C'")
    target = f"{name}_r"
    try:
        with psycopg.connect(pg_cluster.dsn(name), autocommit=True) as conn:
            conn.execute("create table t(s text)")
            conn.execute("insert into t values ('café')")
        p = project_for(tmp_path, pg_cluster.dsn(name))
        proc = restore(p, "--to-database", target)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        row = pg_cluster.psql(f"select pg_encoding_to_char(encoding), datcollate from pg_database "
                              f"where datname = '{target}'").strip()
        assert row == "LATIN1|C"
        assert one(pg_cluster.dsn(target), "select s from t") == "café"
        assert one(pg_cluster.dsn(target), "select octet_length(s) from t") == 4  # one LATIN1 byte for é
    finally:
        drop_db(pg_cluster, name)
        drop_db(pg_cluster, target)


def test_target_server_that_cannot_create_the_database_says_so(ascii_cluster):
    from posterity.errors import RestoreTargetError
    from posterity.sources.postgres.archive_database import DatabaseInfo
    from posterity.sources.postgres.restore_target import create_like

    info = DatabaseInfo(name="posters", create_sql="CREATE DATABASE posters WITH TEMPLATE = template0 "
                        "ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'xx_NOWHERE.UTF-8';")
    with psycopg.connect(ascii_cluster.dsn(), autocommit=True) as conn:
        with pytest.raises(RestoreTargetError, match="cannot create a database like the backup's") as caught:
            create_like(conn, "never_made", info)
        assert "xx_NOWHERE" in caught.value.message and caught.value.hint
        assert conn.execute("select count(*) from pg_database where datname = 'never_made'").fetchone() == (0,)


# -- item 6: a SQL_ASCII source database --------------------------------------------------------


def test_sql_ascii_database_backs_up_and_restores_byte_for_byte(tmp_path, pg_cluster):
    name = f"sqlascii_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f"create database {name} template template0 encoding 'SQL_ASCII' locale 'C'")
    target = f"{name}_r"
    try:
        with psycopg.connect(pg_cluster.dsn(name), autocommit=True) as conn:
            conn.execute("create table t(id int primary key, s text)")
            conn.execute(b"insert into t values (1, 'caf\xe9'), (2, 'plain')")  # a LATIN1 byte, stored as is
        p = project_for(tmp_path, pg_cluster.dsn(name))
        manifest = json.loads(p.run("--json", "show", "latest", check=True).stdout)
        assert manifest["facts"]["row_counts"]["public.t"] == 2
        proc = restore(p, "--to-database", target, "--check-counts")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert pg_cluster.psql(f"select pg_encoding_to_char(encoding) from pg_database "
                               f"where datname = '{target}'").strip() == "SQL_ASCII"
        digest = "select md5(string_agg(convert_to(s, 'SQL_ASCII'), '\\x00'::bytea order by id)) from t"
        assert one(pg_cluster.dsn(target), digest) == one(pg_cluster.dsn(name), digest)
    finally:
        drop_db(pg_cluster, name)
        drop_db(pg_cluster, target)


def test_point_restore_with_clean_keeps_the_old_database_whole(tmp_path, sample_db):
    cluster = sample_db.cluster
    original = fingerprint(sample_db.dsn)
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn, "globals": False}
    p.sources["config"] = {"kind": "files", "paths": [str(p.root / "posterity.toml")]}
    p.write_config()
    p.run("init", check=True)
    p.run("backup", check=True)
    cluster.psql("delete from poster_authors; create view later_view as select id from posters",
                 dbname=sample_db.name)
    changed = fingerprint(sample_db.dsn)
    proc = p.run("--json", "restore", "--point", "latest", "--to-database", sample_db.name, "--clean",
                 "--to", str(tmp_path / "files"))
    kept = None
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        kept = json.loads(proc.stdout)["restored"]["db"]["kept"]
        assert fingerprint(sample_db.dsn) == original
        assert fingerprint(cluster.dsn(kept)) == changed
    finally:
        if kept:
            drop_db(cluster, kept)


def test_globals_filter_keeps_existing_roles_untouched_and_statements_whole():
    from posterity.sources.postgres.restore_roles import filter_globals

    dumped = (
        "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc123\n\n"
        "SET default_transaction_read_only = off;\n\n--\n-- Roles\n--\n\n"
        'CREATE ROLE "App Owner";\n'
        "ALTER ROLE \"App Owner\" WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';\n"
        "CREATE ROLE reader;\nALTER ROLE reader WITH NOLOGIN;\n"
        "COMMENT ON ROLE reader IS 'reads;\nthings';\n"
        'GRANT reader TO "App Owner" GRANTED BY postgres;\n'
        "GRANT \"App Owner\" TO reader GRANTED BY postgres;\n"
        "CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';\n\n\\unrestrict abc123\n"
    )
    text, result = filter_globals(dumped, {"App Owner", "postgres"}, overwrite=False)
    assert result.skipped == ["App Owner"] and result.created == ["reader"]
    assert "SCRAM" not in text and 'GRANT reader TO "App Owner"' not in text
    assert "COMMENT ON ROLE reader IS 'reads;\nthings';" in text
    assert 'GRANT "App Owner" TO reader GRANTED BY postgres;' in text
    assert "CREATE TABLESPACE fast" in text and "\\restrict abc123" in text and "\\unrestrict abc123" in text
    everything, result = filter_globals(dumped, {"App Owner", "postgres"}, overwrite=True)
    assert result.skipped == [] and "SCRAM-SHA-256$4096:x" in everything


def test_create_options_an_older_server_does_not_know_are_left_out_only_when_equivalent():
    from posterity.sources.postgres.restore_target import _supported

    libc = {"ENCODING": "'UTF8'", "LOCALE_PROVIDER": "libc", "LOCALE": "'C.UTF-8'"}
    assert _supported(libc, 15) == libc
    assert _supported(libc, 14) == {"ENCODING": "'UTF8'", "LOCALE": "'C.UTF-8'"}
    assert _supported(libc, 12) == {"ENCODING": "'UTF8'", "LC_COLLATE": "'C.UTF-8'", "LC_CTYPE": "'C.UTF-8'"}
    icu = {"ENCODING": "'UTF8'", "LOCALE_PROVIDER": "icu", "ICU_LOCALE": "'en-US'"}
    assert _supported(icu, 14) == icu  # left for the server to refuse, with the reason


def test_name_switch_twice_in_one_second_keeps_both_old_databases(pg_cluster):
    from datetime import UTC, datetime, timedelta

    from posterity.sources.postgres.restore_target import derived_name, swap_in

    target = f"sw_{uuid.uuid4().hex[:8]}"
    build = f"{target}_restoring_000001"
    now = datetime.now(UTC)
    taken = [derived_name(target, f"_before_{(now + timedelta(seconds=i)).strftime('%Y%m%dT%H%M%S')}")
             for i in range(3)]
    for name in (target, build, *taken):
        pg_cluster.psql(f'create database "{name}"')
    pg_cluster.psql("create table marker(i int)", dbname=build)
    kept = None
    try:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
            kept = swap_in(conn, build, target)
        assert kept not in taken and kept.startswith(f"{target}_before_")
        assert one(pg_cluster.dsn(target), "select count(*) from pg_tables where tablename = 'marker'") == 1
    finally:
        for name in (target, build, kept, *taken):
            if name:
                drop_db(pg_cluster, name)
