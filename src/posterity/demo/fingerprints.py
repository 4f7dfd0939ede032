"""Exact summaries of a database, to compare a restored copy with the original.

``fingerprint`` digests every user table's rows, every sequence and (optionally) the
catalog's object definitions; ``table_row_counts`` counts rows. Both read one snapshot and
work on any database, not only the Posters.science sample.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["fingerprint", "table_row_counts"]

# Output settings that change how values are rendered as text: pinned so that the
# fingerprint depends only on the data, not on server or session defaults.
_PINNED_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
    "SET lc_monetary = 'C'",
    "SET search_path = pg_catalog",
)

# Ordinary and partitioned tables / sequences in non-system schemas, excluding objects
# that belong to an extension.
_RELATIONS_SQL = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = ANY (%s)
  AND n.nspname <> 'information_schema'
  AND n.nspname !~ '^pg_'
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::regclass
        AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
"""

_USER_SCHEMA_FILTER = "{ns} <> 'information_schema' AND {ns} !~ '^pg_'"

_CATALOG_QUERIES: dict[str, str] = {
    # schema.table.column type [not null]
    "catalog:columns": """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname || ' '
               || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {filter}
    """,
    "catalog:indexes": """
        SELECT n.nspname || '.' || ic.relname || ' ' || pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE {filter}
    """,
    "catalog:constraints": """
        SELECT n.nspname || '.' || c.relname || '.' || con.conname || ' ' || con.contype::text
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {filter}
    """,
    "catalog:views": """
        SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND {filter}
    """,
    "catalog:functions": """
        SELECT n.nspname || '.' || p.proname || '('
               || pg_get_function_identity_arguments(p.oid) || ') ' || p.prokind::text
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {filter}
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    """,
}


def _relations(cur: psycopg.Cursor[Any], kinds: list[str]) -> list[tuple[str, str]]:
    cur.execute(_RELATIONS_SQL, (kinds,))
    return [(str(schema), str(name)) for schema, name in cur.fetchall()]


def _table_digest(cur: psycopg.Cursor[Any], schema: str, table: str) -> tuple[int, str]:
    """Row count and md5 over every row's text form, sorted bytewise.

    Streams ``COPY ... TO STDOUT`` so arbitrarily large tables never have to fit in a
    single value (``string_agg`` is capped at 1 GB).
    """
    query = sql.SQL(
        'COPY (SELECT r FROM (SELECT t::text AS r FROM {s}.{t} AS t) AS x ORDER BY r COLLATE "C") '
        "TO STDOUT"
    ).format(s=sql.Identifier(schema), t=sql.Identifier(table))
    digest = hashlib.md5(usedforsecurity=False)
    rows = 0
    with cur.copy(query) as copy:
        for block in copy:
            data = bytes(block)
            rows += data.count(b"\n")  # text COPY escapes embedded newlines
            digest.update(data)
    return rows, digest.hexdigest()


def _catalog_digest(cur: psycopg.Cursor[Any], query: str) -> tuple[int, str]:
    filter_sql = _USER_SCHEMA_FILTER.format(ns="n.nspname")
    cur.execute(query.format(filter=filter_sql))
    lines = sorted(str(row[0]) for row in cur.fetchall())
    blob = "".join(line + "\n" for line in lines).encode()
    return len(lines), hashlib.md5(blob, usedforsecurity=False).hexdigest()


def fingerprint(dsn: str, *, include_catalog: bool = True) -> dict[str, tuple[int, str]]:
    """An exact, deterministic summary of a database's user data.

    Keys and values:

    * ``"schema.table"`` -> ``(row_count, md5)`` for every ordinary/partitioned table
      in every non-system schema; the md5 covers every row's text form, rows sorted
      bytewise, with date/time/float/bytea output settings pinned.
    * ``"sequence:schema.name"`` -> ``(last_value, "called" | "not_called")``.
    * with ``include_catalog`` (default), ``"catalog:columns"``, ``"catalog:indexes"``,
      ``"catalog:constraints"``, ``"catalog:views"`` and ``"catalog:functions"`` ->
      ``(count, md5)`` of the sorted object definitions (no OIDs or owners), so a
      restore that lost an index or a view does not compare equal.
    """
    result: dict[str, tuple[int, str]] = {}
    with _one_snapshot(dsn, _PINNED_SETTINGS) as cur:
        for schema, table in _relations(cur, ["r", "p"]):
            result[f"{schema}.{table}"] = _table_digest(cur, schema, table)
        for schema, seq in _relations(cur, ["S"]):
            row = _one_row(cur, "SELECT last_value, is_called FROM {s}.{t}", schema, seq)
            result[f"sequence:{schema}.{seq}"] = (
                int(row[0]),
                "called" if row[1] else "not_called",
            )
        if include_catalog:
            for key, query in _CATALOG_QUERIES.items():
                result[key] = _catalog_digest(cur, query)
    return result


def table_row_counts(dsn: str) -> dict[str, int]:
    """Exact ``count(*)`` of every user table, keyed ``"schema.table"``."""
    counts: dict[str, int] = {}
    with _one_snapshot(dsn) as cur:
        for schema, table in _relations(cur, ["r", "p"]):
            counts[f"{schema}.{table}"] = int(_one_row(cur, "SELECT count(*) FROM {s}.{t}", schema, table)[0])
    return counts


@contextlib.contextmanager
def _one_snapshot(dsn: str, settings: tuple[str, ...] = ()) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor inside one read-only REPEATABLE READ transaction: every read sees one snapshot."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        for stmt in settings:
            cur.execute(stmt)
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield cur
        finally:
            cur.execute("COMMIT")


def _one_row(cur: psycopg.Cursor[Any], query: str, schema: str, name: str) -> tuple[Any, ...]:
    """The single row of ``query`` with ``{s}``/``{t}`` the quoted schema and relation name."""
    cur.execute(sql.SQL(query).format(s=sql.Identifier(schema), t=sql.Identifier(name)))
    row = cur.fetchone()
    assert row is not None
    return tuple(row)
