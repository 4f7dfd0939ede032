"""PostgreSQL plumbing shared by the postgres sources: connections, binaries, versions.

Finding a program is ``localpg.binaries.find_binary`` (re-exported here); running one as a
local cluster's OS user is ``localpg``. This module is SQL over a DSN (psycopg, its errors
converted by ``map_connect_error``) and the client tools' environment and versions.

Secrets: the DSN may hold a password. Client programs get the connection through libpq's
environment variables (PGHOST, PGPASSWORD, …) and no connection arguments, so nothing
secret is visible in the process list; messages show only host, port, user and database.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ...errors import (
    SourceAuthError,
    SourceError,
    SourceTimeout,
    SourceUnreachable,
    ToolMissing,
    ToolVersionError,
)
from ...localpg.binaries import find_binary

_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "passfile": "PGPASSFILE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


def parse_dsn(dsn: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise SourceError(
            "The dsn is not a valid PostgreSQL connection string.",
            hint="Write postgresql://user@host:5432/dbname (password via PGPASSWORD or ~/.pgpass).",
        ) from exc


def with_database(dsn: str, dbname: str) -> str:
    params = parse_dsn(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def describe(dsn: str) -> str:
    """host:port/db as user — never the password."""
    p = parse_dsn(dsn)
    return f"{p.get('user') or os.environ.get('PGUSER', '')}@{p.get('host', 'localhost')}:{p.get('port', '5432')}/{p.get('dbname', '')}"


def client_env(dsn: str, dbname: str | None = None) -> dict[str, str]:
    """Environment for pg_dump/pg_restore/psql: the connection, and no stray PG* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k in ("PGPASSFILE",)}
    params = parse_dsn(dsn)
    if dbname:
        params["dbname"] = dbname
    params.setdefault("connect_timeout", "10")
    params.setdefault("application_name", "posterity")
    for key, value in params.items():
        var = _ENV.get(key)
        if var:
            env[var] = value
    if "PGPASSWORD" not in env and os.environ.get("PGPASSWORD"):
        env["PGPASSWORD"] = os.environ["PGPASSWORD"]
    return env


def connect(dsn: str, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection:
    params = parse_dsn(dsn)
    if dbname:
        params["dbname"] = dbname
    params.setdefault("connect_timeout", "10")
    params.setdefault("application_name", "posterity")
    # A SQL_ASCII database would hand psycopg bytes (b'public'); ask for UTF8 everywhere: the
    # server converts LATIN1 & co. and passes SQL_ASCII through, so names arrive as str.
    params.setdefault("client_encoding", "UTF8")
    where = describe(make_conninfo(**params))
    try:
        return psycopg.connect(make_conninfo(**params), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise map_connect_error(exc, where) from None


def map_connect_error(exc: Exception, where: str) -> SourceError:
    text = str(exc)
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        return SourceAuthError(f"PostgreSQL at {where} refused the login (authentication failed).")
    if "does not exist" in low and "database" in low:
        return SourceError(
            f"The database of {where} does not exist.",
            hint="Check dbname in the dsn (`psql -l` lists the databases).",
        )
    if "role" in low and "does not exist" in low:
        return SourceAuthError(f"The user of {where} does not exist on the server.")
    if "permission denied" in low or "not permitted" in low or "pg_hba.conf" in low:
        return SourceAuthError(f"PostgreSQL at {where} does not allow this connection: {_first_line(text)}")
    return SourceUnreachable(f"Cannot connect to PostgreSQL at {where}: {_first_line(text)}")


@contextlib.contextmanager
def query_errors(where: str, what: str = "a query") -> Iterator[None]:
    """Convert psycopg errors raised after connecting (a lost connection, a statement timeout,
    a permission) into the error tree: ``SourceTimeout`` for a cancelled statement,
    ``SourceUnreachable`` for a dropped connection, ``SourceError`` otherwise."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise SourceTimeout(f"PostgreSQL at {where} cancelled {what}: {_first_line(str(exc))}",
                            hint="The server's statement_timeout stopped it; raise it for this role, or retry.") from None
    except psycopg.OperationalError as exc:
        raise SourceUnreachable(f"Lost the connection to PostgreSQL at {where} during {what}: "
                                f"{_first_line(str(exc))}") from None
    except psycopg.Error as exc:
        raise SourceError(f"PostgreSQL at {where} refused {what}: {_first_line(str(exc))}",
                          hint="Grant the role what the message names (e.g. pg_monitor), or fix the setting.") from None


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return re.sub(r"password=\S+", "password=***", line)[:300]


def server_facts(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "select current_setting('server_version_num')::int, current_setting('server_version'), "
        "current_database(), pg_database_size(current_database()), pg_is_in_recovery(), "
        "(select system_identifier::text from pg_control_system())"
    ).fetchone()
    assert row is not None
    return {
        "server_version_num": row[0],
        "server_version": row[1],
        "database": row[2],
        "database_size": row[3],
        "in_recovery": row[4],
        "system_identifier": row[5],
    }


def tool_version(path: Path) -> tuple[int, str]:
    """(major, full version string) of a PostgreSQL client program."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False,
                             timeout=30).stdout
    except subprocess.TimeoutExpired as exc:
        raise SourceTimeout(f"{path} --version did not answer within 30 s.",
                            hint="Check the program (a wrapper script waiting for input?), or set bin_dir.") from exc
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        raise ToolMissing(f"Could not read the version of {path}.")
    return int(m.group(1)), out.strip().split(")")[-1].strip() or out.strip()


def require_client(name: str, server_major: int, bin_dir: Path | None = None) -> tuple[Path, str]:
    path = find_binary(name, server_major, bin_dir)
    major, version = tool_version(path)
    if major < server_major:
        raise ToolVersionError(
            f"{path} is version {major}, older than the server ({server_major}); it cannot dump it safely.",
            hint=f"Install postgresql-client-{server_major} (or newer), or set bin_dir to its bin folder.",
        )
    return path, version
