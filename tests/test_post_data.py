"""A split restore builds each table's indexes, keys and triggers as soon as that table's rows
are in (``post_data``), never before: the restored schema is the source's, byte for byte as
``pg_dump --schema-only`` prints it, and a trigger that would rewrite rows never fires on them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import psycopg

from posterity.demo.sample_data import fingerprint
from posterity.sources.postgres.archive_toc import TocEntry, read_toc
from posterity.sources.postgres.post_data import _early_kind, plan


def add_post_data_objects(dsn: str) -> None:
    """Post-data objects of every kind the early runs handle, and some they must leave alone."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in [
            # Two tables with foreign keys both ways (each waits for both tables and the other's key).
            "create table left_t (id int primary key, right_id int, note text)",
            "create table right_t (id int primary key, left_id int)",
            "insert into left_t select g, g, md5(g::text) from generate_series(1, 3000) g",
            "insert into right_t select g, g from generate_series(1, 3000) g",
            "alter table left_t add constraint left_right_fk foreign key (right_id) references right_t(id)",
            "alter table right_t add constraint right_left_fk foreign key (left_id) references left_t(id)",
            "create unique index left_note_idx on left_t (note)",
            "comment on index left_note_idx is 'a comment on a post-data object'",
            # A trigger that would rewrite every restored row if it were created before the load.
            "create function shout() returns trigger language plpgsql as "
            "$$ begin new.note := upper(new.note) || '!'; return new; end $$",
            "create trigger left_shout before insert or update on left_t for each row execute function shout()",
            "alter table posters add constraint posters_title_chk check (length(title) > 0) not valid",
            # Left to the final run: a materialized view's index, a rule, a policy.
            "create materialized view left_mv as select right_id, count(*) as n from left_t group by right_id",
            "create unique index left_mv_idx on left_mv (right_id)",
            "create rule right_never_deleted as on delete to right_t do instead nothing",
            "alter table left_t enable row level security",
            "create policy left_mine on left_t using (id > 0)",
            "analyze",
        ]:
            conn.execute(sql)


def schema_text(cluster, db: str) -> str:
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    out = subprocess.run([str(bin_dir / "pg_dump"), "--schema-only", "-h", "127.0.0.1", "-p", str(cluster.port),
                          "-U", "postgres", db], capture_output=True, text=True, check=True).stdout
    return re.sub(r"^\\(un)?restrict .*$", "", out, flags=re.M)  # a random key per dump (pg_dump 17.6+)


def test_indexes_keys_and_triggers_are_built_between_loads_and_the_schema_is_identical(local_split, sample_db):
    add_post_data_objects(sample_db.dsn)
    before = schema_text(sample_db.cluster, sample_db.name)
    original = fingerprint(sample_db.dsn)
    local_split.run("backup", "db", check=True)
    target = f"{sample_db.name}_r"
    r = local_split.run("-v", "--json", "restore", "db", "latest", "--to-database", target, "--jobs", "2",
                          "--check-counts", check=True)
    try:
        early = re.search(r"(\d+) index, key and trigger entries built between loads", r.stderr)
        assert early and int(early.group(1)) >= 8, r.stderr  # the plan ran, not the old phases
        assert json.loads(r.stdout)["row_counts"]["matched"] >= 8
        assert schema_text(sample_db.cluster, target) == before
        assert fingerprint(sample_db.cluster.dsn(target)) == original
        with psycopg.connect(sample_db.cluster.dsn(target)) as conn:
            notes = conn.execute("select count(*) from left_t where note like '%!'").fetchone()
            assert notes == (0,)  # the trigger never fired on restored rows
    finally:
        sample_db.cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_the_plan_waits_for_every_table_an_entry_touches(local_split, sample_db, tmp_path):
    add_post_data_objects(sample_db.dsn)
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    schema = tmp_path / "schema.pgdump"
    subprocess.run([str(bin_dir / "pg_dump"), "-Fc", "--section=pre-data", "--section=post-data", "-f", str(schema),
                    "-h", "127.0.0.1", "-p", str(sample_db.cluster.port), "-U", "postgres", sample_db.name], check=True)
    entries = read_toc(schema)
    toc = {e.tag: e for e in entries if e.desc != "TABLE"}
    table = {e.tag: e.dump_id for e in entries if e.desc == "TABLE"}
    archives = {"a": ["public.left_t"], "b": ["public.right_t"], "c": ["public.posters"], "rest": None}
    p = plan(schema, archives)
    assert p is not None
    assert p.needs[toc["left_t left_t_pkey"].dump_id] == {"a"}
    assert p.needs[toc["left_t left_right_fk"].dump_id] == {"a", "b"}
    assert p.needs[toc["left_t left_shout"].dump_id] == {"a"}
    assert toc["left_mv_idx"].dump_id not in p.needs  # on a materialized view: at the end
    assert toc["posters posters_title_chk"].dump_id not in p.needs  # NOT VALID checks: at the end
    first = {e.tag for e in p.ready({"a"})}
    assert {"left_t left_t_pkey", "left_note_idx", "INDEX left_note_idx", "left_t left_shout"} <= first  # + its comment
    assert not first & {"left_t left_right_fk", "right_t right_t_pkey"}
    assert p.ready({"a"}) == []  # claimed once
    second = {e.tag for e in p.ready({"a", "b"})}
    assert {"right_t right_t_pkey", "left_t left_right_fk", "right_t right_left_fk"} <= second
    left = {e.tag for e in p.rest()}
    assert {"left_mv_idx", "right_t right_never_deleted", "left_t left_mine", "posters posters_title_chk"} <= left
    assert p.tables_of([toc["left_t left_right_fk"]]) == {table["left_t"], table["right_t"]}


def test_partitioned_tables_turn_the_plan_off_and_still_restore(local_split, sample_db):
    with psycopg.connect(sample_db.dsn, autocommit=True) as conn:
        conn.execute("create table events (id int, at date, primary key (id, at)) partition by range (at)")
        conn.execute("create table events_2025 partition of events for values from ('2025-01-01') to ('2026-01-01')")
        conn.execute("create table events_2026 partition of events for values from ('2026-01-01') to ('2027-01-01')")
        conn.execute("insert into events select g, date '2025-01-01' + (g % 700) from generate_series(1, 5000) g")
        conn.execute("create index events_at on events (at)")
        conn.execute("analyze")
    before = schema_text(sample_db.cluster, sample_db.name)
    original = fingerprint(sample_db.dsn)
    local_split.run("backup", "db", check=True)
    target = f"{sample_db.name}_p"
    r = local_split.run("-v", "restore", "db", "latest", "--to-database", target, "--jobs", "2", check=True)
    try:
        assert "partitioned tables" in r.stderr
        assert schema_text(sample_db.cluster, target) == before
        assert fingerprint(sample_db.cluster.dsn(target)) == original
    finally:
        sample_db.cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_plan_is_off_when_a_data_archive_names_a_table_the_schema_does_not(local_split, sample_db, tmp_path):
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    schema = tmp_path / "schema.pgdump"
    subprocess.run([str(bin_dir / "pg_dump"), "-Fc", "--section=pre-data", "--section=post-data", "-f", str(schema),
                    "-h", "127.0.0.1", "-p", str(sample_db.cluster.port), "-U", "postgres", sample_db.name], check=True)
    assert plan(schema, {"a": ["public.posters"], "rest": None}) is not None
    # Spelled otherwise (e.g. a changed normalisation): its triggers would fall to the rest archive.
    assert plan(schema, {"a": ['public."posters"'], "rest": None}) is None


def _entry(desc: str, defn: str, deps: tuple[int, ...]) -> TocEntry:
    return TocEntry(dump_id=9, desc=desc, section=4, namespace="public", tag="t x", deps=deps, defn=defn)


def test_only_keys_on_only_their_table_and_foreign_keys_to_a_key_in_the_archive_run_early():
    post = {5}  # the referenced key's entry
    assert _early_kind(_entry("CONSTRAINT", "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);",
                              (1,)), post)
    assert _early_kind(_entry("CONSTRAINT", "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_u UNIQUE (a, b);",
                              (1,)), post)
    # pg_dump 18 adds NOT VALID NOT NULL constraints without ONLY: they reach inheritance children.
    assert not _early_kind(_entry("CONSTRAINT", "ALTER TABLE public.t\n    ADD CONSTRAINT t_nn NOT NULL a NOT VALID;",
                                  (1,)), post)
    fk = "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_fk FOREIGN KEY (r) REFERENCES public.r(id);"
    assert _early_kind(_entry("FK CONSTRAINT", fk, (1, 5, 2)), post)
    # A key outside the archive (an extension's configuration table): not a dependency, so wait.
    assert not _early_kind(_entry("FK CONSTRAINT", fk, (1,)), post)
    assert _early_kind(_entry("INDEX", "CREATE INDEX i ON public.t USING btree (a);", (1,)), post)
    assert not _early_kind(_entry("RULE", "CREATE RULE r AS ON DELETE TO public.t DO INSTEAD NOTHING;", (1,)), post)
