"""``restore --with-roles``: create the backup's roles that the target server lacks.

A role that already exists on the target is left exactly as it is — its password, LOGIN,
attributes, settings, comment and memberships — and reported as skipped: a password changed
or a login revoked since the backup must not come back because a database was restored.
``--overwrite-roles`` applies the backup's statements to existing roles as well.

The globals artifact is ``pg_dumpall --globals-only`` output; each statement about a role
(``CREATE ROLE r``, ``ALTER ROLE r …``, ``COMMENT ON ROLE r``, ``SECURITY LABEL … ON ROLE r``,
``GRANT … TO r``) is kept or dropped by the role it changes. Tablespaces and the rest pass.
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ...repository import Manifest, Repository
from .archive_database import statements
from .logical import GLOBALS_KIND
from .tools import client_env, connect, find_binary

_IDENT = r'("(?:[^"]|"")*"|[^\s;,]+)'
_SUBJECT = [
    re.compile(r"^CREATE ROLE " + _IDENT, re.I),
    re.compile(r"^ALTER ROLE " + _IDENT, re.I),
    re.compile(r"^COMMENT ON ROLE " + _IDENT, re.I),
    re.compile(r"^SECURITY LABEL FOR \S+ ON ROLE " + _IDENT, re.I),
    re.compile(r"^GRANT .* TO " + _IDENT, re.I | re.S),
]


@dataclass
class RolesResult:
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # existed on the target: left as they were
    warnings: list[str] = field(default_factory=list)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def subject(statement: str) -> str | None:
    """The role a globals statement changes, if it is about a role."""
    for pattern in _SUBJECT:
        m = pattern.match(statement)
        if m:
            return _unquote(m.group(1))
    return None


def filter_globals(sql_text: str, existing: set[str], overwrite: bool) -> tuple[str, RolesResult]:
    result = RolesResult()
    kept: list[str] = []
    for statement in statements(sql_text):
        role = subject(statement)
        if role is not None and role in existing and not overwrite:
            if role not in result.skipped:
                result.skipped.append(role)
            continue
        if statement.upper().startswith("CREATE ROLE") and role is not None:
            result.created.append(role)
        kept.append(statement)
    return "\n".join(kept) + "\n", result


def restore_globals(repo: Repository, manifest: Manifest, identities: list, dsn: str, major: int,
                    bin_dir: Path | None, overwrite: bool) -> RolesResult:
    found = manifest.artifacts_of_kind(GLOBALS_KIND)
    if not found:
        return RolesResult(warnings=["This backup holds no roles (globals); --with-roles did nothing."])
    buf = io.BytesIO()
    repo.read_artifact(found[0], buf, identities)
    with connect(dsn, dbname="postgres") as conn:
        existing = {r[0] for r in conn.execute("select rolname from pg_roles").fetchall()}
    text, result = filter_globals(buf.getvalue().decode("utf-8", errors="surrogateescape"), existing, overwrite)
    psql = find_binary("psql", major, bin_dir)
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.run(
            [str(psql), "-X", "-q", "--no-password", "-d", "postgres"],
            input=text.encode("utf-8", errors="surrogateescape"),
            stdout=subprocess.DEVNULL, stderr=errf, env=client_env(dsn, dbname="postgres"), check=False, timeout=600,
        )
        errf.seek(0)
        for line in errf.read().decode(errors="replace").splitlines():
            if "ERROR" in line and "already exists" not in line:
                result.warnings.append(f"roles: {line.strip()}")
    if proc.returncode != 0:
        result.warnings.append(f"roles: psql exited {proc.returncode}")
    return result
