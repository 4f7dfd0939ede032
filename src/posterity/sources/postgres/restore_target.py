"""The target database of a logical restore: is it empty, create it like the backup's, give it
the backup's database-level properties, and swap a finished copy in under its name.

Replacing an existing database (``--clean``) never drops anything first: the backup is
restored into a new database beside it, and only when that is complete are the names
switched in one transaction — the old database stays, whole, under ``<name>_before_<time>``
until the user drops it. The cost is disk space for both copies while it stays; the time is
that of a restore into a new database (nothing is dropped object by object).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from ...errors import RestoreTargetError
from .archive_database import DatabaseInfo, quote_ident, renamed
from .tools import connect

log = logging.getLogger(__name__)

NAME_MAX = 63  # NAMEDATALEN - 1, in bytes
SWAP_ATTEMPTS = 10

# Anything a user (not an extension, not the system) made, in any catalog pg_dump restores
# objects into. A database holding only a type, a function or a large object is not empty.
_USER_OBJECTS = """
with ns as (
  select oid from pg_namespace
  where nspname not in ('pg_catalog', 'information_schema') and nspname not like 'pg_toast%'
    and nspname not like 'pg_temp%'
), ext as (select objid, classid from pg_depend where deptype in ('e', 'i'))
select
  (select count(*) from pg_class c where c.relnamespace in (select oid from ns)
     and not exists (select 1 from ext where ext.objid = c.oid and ext.classid = 'pg_class'::regclass))
+ (select count(*) from pg_type t where t.typnamespace in (select oid from ns) and t.typrelid = 0
     and not exists (select 1 from ext where ext.objid = t.oid and ext.classid = 'pg_type'::regclass))
+ (select count(*) from pg_proc p where p.pronamespace in (select oid from ns)
     and not exists (select 1 from ext where ext.objid = p.oid and ext.classid = 'pg_proc'::regclass))
+ (select count(*) from pg_collation o where o.collnamespace in (select oid from ns)
     and not exists (select 1 from ext where ext.objid = o.oid and ext.classid = 'pg_collation'::regclass))
+ (select count(*) from pg_operator o where o.oprnamespace in (select oid from ns)
     and not exists (select 1 from ext where ext.objid = o.oid and ext.classid = 'pg_operator'::regclass))
+ (select count(*) from pg_ts_config o where o.cfgnamespace in (select oid from ns)
     and not exists (select 1 from ext where ext.objid = o.oid and ext.classid = 'pg_ts_config'::regclass))
+ (select count(*) from pg_largeobject_metadata)
+ (select count(*) from pg_extension where extname <> 'plpgsql')
+ (select count(*) from pg_namespace where oid in (select oid from ns) and nspname <> 'public'
     and not exists (select 1 from ext where ext.objid = pg_namespace.oid
                     and ext.classid = 'pg_namespace'::regclass))
+ (select count(*) from pg_event_trigger)
+ (select count(*) from pg_publication)
"""


def is_empty(dsn: str, dbname: str) -> bool:
    with connect(dsn, dbname=dbname) as conn:
        row = conn.execute(_USER_OBJECTS).fetchone()
    return row is not None and row[0] == 0


def derived_name(base: str, suffix: str) -> str:
    """``base`` + ``suffix``, with ``base`` cut so the whole fits PostgreSQL's 63 bytes."""
    room = NAME_MAX - len(suffix.encode())
    cut = base.encode()[:room].decode(errors="ignore")
    return cut + suffix


def leftovers(conn: psycopg.Connection, target: str) -> list[str]:
    """Databases an earlier ``--clean`` restore of ``target`` left behind when it was killed."""
    prefix = derived_name(target, "_restoring_000000")[: -len("000000")]
    rows = conn.execute("select datname from pg_database where left(datname, %s) = %s and length(datname) = %s",
                        (len(prefix), prefix, len(prefix) + 6)).fetchall()
    return [r[0] for r in rows]


def build_name(target: str) -> str:
    return derived_name(target, f"_restoring_{secrets.token_hex(3)}")


def kept_name(target: str, extra: str = "") -> str:
    return derived_name(target, f"_before_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{extra}")


def create_like(conn: psycopg.Connection, name: str, info: DatabaseInfo | None) -> list[str]:
    """Create ``name`` from template0 with the backup's encoding and locale; returns notes."""
    options = _supported(info.create_options() if info else {}, conn.info.server_version // 10000)
    parts = [f"CREATE DATABASE {quote_ident(name)} WITH TEMPLATE = template0"]
    parts += [f"{k} = {v}" for k, v in options.items()]
    statement = " ".join(parts)
    try:
        conn.execute(statement.encode())
    except psycopg.Error as exc:
        described = ", ".join(f"{k.lower()} {v}" for k, v in options.items())
        raise RestoreTargetError(
            f"The target server cannot create a database like the backup's ({described}): "
            f"{str(exc).strip().splitlines()[0]}. Nothing was changed.",
            hint="Install that locale on the target server (or ICU), or create the database yourself with settings "
                 "that fit and restore into it: an existing empty database is used as it is.") from exc
    return [f"created {name} with {', '.join(f'{k.lower()} {v}' for k, v in options.items())}"] if options else []


def _supported(options: dict[str, str], major: int) -> dict[str, str]:
    """Drop options an older target server does not know when leaving them out means the same.

    A libc database needs no LOCALE_PROVIDER before 15 (libc was the only one), and LOCALE is
    LC_COLLATE plus LC_CTYPE. An ICU database on a server before 15 is left to fail, saying so.
    """
    out = dict(options)
    if major < 15 and out.get("LOCALE_PROVIDER", "libc").strip("'") == "libc":
        out.pop("LOCALE_PROVIDER", None)
    if major < 13 and "LOCALE" in out:
        value = out.pop("LOCALE")
        out.setdefault("LC_COLLATE", value)
        out.setdefault("LC_CTYPE", value)
    return out


def check_encoding(conn: psycopg.Connection, name: str, info: DatabaseInfo | None) -> list[str]:
    """Warnings when an existing target's encoding differs from the backup's."""
    if info is None or info.encoding is None:
        return []
    row = conn.execute("select pg_encoding_to_char(encoding) from pg_database where datname = %s", (name,)).fetchone()
    if row and row[0] != info.encoding:
        return [f"the existing database {name!r} has encoding {row[0]}, the backup's had {info.encoding}; "
                "text was converted"]
    return []


def apply_properties(dsn: str, name: str, info: DatabaseInfo | None, *, owner: bool, privileges: bool) -> list[str]:
    """Apply the backup's database settings, comment, privileges (and owner); returns warnings."""
    if info is None:
        return []
    todo = list(info.properties) + list(info.comment)
    if privileges:
        todo += info.acl
    if owner and info.owner:
        todo.append(f"ALTER DATABASE {quote_ident(info.name)} OWNER TO {quote_ident(info.owner)};")
    warnings: list[str] = []
    with connect(dsn, dbname=name) as conn:
        for statement in todo:
            text = renamed(statement, info.name, name)
            try:
                conn.execute(text.encode())
            except psycopg.Error as exc:
                warnings.append(f"database property not applied ({text.splitlines()[0][:120]}): "
                                f"{str(exc).strip().splitlines()[0]}")
    return warnings


def swap_in(conn: psycopg.Connection, build: str, target: str) -> str:
    """Rename ``target`` aside and ``build`` to ``target`` in one transaction; returns the kept name.

    Sessions still connected to ``target`` are ended first (``--clean`` asked to replace it);
    a client that reconnects in between makes the attempt fail and it is retried, a bounded
    number of times.
    """
    kept = kept_name(target)
    if conn.execute("select 1 from pg_database where datname = %s", (kept,)).fetchone():  # twice in a second
        kept = kept_name(target, f"_{secrets.token_hex(2)}")
    last: Exception | None = None
    for _ in range(SWAP_ATTEMPTS):
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                     "where datname = %s and pid <> pg_backend_pid()", (target,))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("alter database {} rename to {}").format(sql.Identifier(target),
                                                                             sql.Identifier(kept)))
                conn.execute(sql.SQL("alter database {} rename to {}").format(sql.Identifier(build),
                                                                             sql.Identifier(target)))
            return kept
        except psycopg.errors.ObjectInUse as exc:
            last = exc
            time.sleep(0.3)
        except psycopg.Error as exc:  # e.g. renaming the database this connection is on
            last = exc
            break
    raise RestoreTargetError(
        f"The restore is complete in database {build!r}, but the names could not be switched "
        f"({str(last).strip().splitlines()[0] if last else 'no reason given'}); {target!r} is unchanged.",
        hint=f"Stop the clients of {target!r}, then: ALTER DATABASE {quote_ident(target)} RENAME TO "
             f"{quote_ident(kept)}; ALTER DATABASE {quote_ident(build)} RENAME TO {quote_ident(target)};")
