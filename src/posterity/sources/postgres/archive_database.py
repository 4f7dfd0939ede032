"""The database itself, as a pg_dump archive records it: how to create it and its properties.

pg_dump always writes these TOC entries, but ``pg_restore`` without ``--create`` skips them:
- ``DATABASE``: ``CREATE DATABASE … WITH TEMPLATE = template0 ENCODING = … LOCALE_PROVIDER = …
  LOCALE = … [LC_COLLATE/LC_CTYPE/ICU_LOCALE …]`` and the owner;
- ``DATABASE PROPERTIES``: ``ALTER DATABASE … SET …`` (and ``ALTER ROLE … IN DATABASE … SET``,
  connection limit);
- ``COMMENT`` and ``ACL`` entries tagged ``DATABASE <name>``.

A restore into another name needs them with that name: :func:`renamed` rewrites
``DATABASE <old>`` to ``DATABASE <new>`` in each statement. The TOC sits at the head of a
custom-format archive, so :func:`read_database_info` decodes only the first bytes of the
stored dump (doubling up to :data:`HEAD_LIMIT`), not the whole backup.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from ...repository import Repository
from .archive_toc import _Reader, _Unsupported

HEAD_LIMIT = 256 << 20
# CREATE DATABASE options that describe the database's text handling; others (TEMPLATE, OID,
# TABLESPACE) are the target's business.
CREATE_OPTIONS = ("ENCODING", "LOCALE_PROVIDER", "LOCALE", "LC_COLLATE", "LC_CTYPE", "ICU_LOCALE", "ICU_RULES",
                  "BUILTIN_LOCALE")
_OPTION = re.compile(r"\b([A-Z_]+)\s*=\s*('(?:[^']|'')*'|[A-Za-z0-9_]+)")
_DB_NAME = re.compile(r'\bDATABASE\s+("(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)')


@dataclass
class DatabaseInfo:
    name: str
    owner: str | None = None
    create_sql: str = ""
    properties: list[str] = field(default_factory=list)  # DATABASE PROPERTIES statements
    comment: list[str] = field(default_factory=list)
    acl: list[str] = field(default_factory=list)

    def create_options(self) -> dict[str, str]:
        """``{"ENCODING": "'UTF8'", "LOCALE_PROVIDER": "icu", …}`` as written by pg_dump."""
        found = {k.upper(): v for k, v in _OPTION.findall(self.create_sql)}
        return {k: found[k] for k in CREATE_OPTIONS if k in found}

    @property
    def encoding(self) -> str | None:
        value = self.create_options().get("ENCODING")
        return value.strip("'") if value else None


def statements(defn: str) -> list[str]:
    """Split pg_dump/pg_dumpall SQL into statements (each ends with ';' and a newline); comment
    lines between statements are dropped, psql meta-commands kept as their own line."""
    out: list[str] = []
    current: list[str] = []
    quote = False
    for line in defn.splitlines(keepends=True):
        if not current and (not line.strip() or line.startswith("--")):
            continue
        if not current and line.startswith("\\"):  # a psql meta-command (\connect, \restrict): one line
            out.append(line.strip())
            continue
        current.append(line)
        quote ^= line.count("'") % 2 == 1
        if not quote and line.rstrip().endswith(";"):
            out.append("".join(current).strip())
            current = []
    rest = "".join(current).strip()
    if rest:
        out.append(rest)
    return out


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def renamed(statement: str, old: str, new: str) -> str:
    """``statement`` with every ``DATABASE <old>`` naming ``new`` instead."""

    def sub(m: re.Match[str]) -> str:
        return f"DATABASE {quote_ident(new)}" if _unquote(m.group(1)) == old else m.group(0)

    return _DB_NAME.sub(sub, statement)


class _Enough(BrokenPipeError):
    """Raised by the sink once the TOC is read; stops decoding the rest of the dump."""


class _HeadSink:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.next_try = 64 << 10
        self.info: DatabaseInfo | None = None
        self.unsupported = False

    def write(self, b: bytes) -> int:
        self.buf += b
        if len(self.buf) >= self.next_try:
            self._try()
        return len(b)

    def flush(self) -> None:
        pass

    def _try(self) -> None:
        try:
            self.info = parse_database_info(bytes(self.buf))
        except EOFError:
            if len(self.buf) >= HEAD_LIMIT:
                self.unsupported = True
                raise _Enough() from None
            self.next_try = len(self.buf) * 2
            return
        except (_Unsupported, ValueError, UnicodeDecodeError):
            self.unsupported = True
        raise _Enough()


def read_database_info(repo: Repository, dump, identities: list) -> DatabaseInfo | None:
    """The archive's database entries, or None when the archive does not say (or is unfamiliar)."""
    sink = _HeadSink()
    try:
        repo.read_artifact(dump, sink, identities)
    except BrokenPipeError:
        return sink.info
    if sink.info is None and not sink.unsupported:  # a dump smaller than the first try
        try:
            sink.info = parse_database_info(bytes(sink.buf))
        except (EOFError, _Unsupported, ValueError, UnicodeDecodeError):
            return None
    return sink.info


def parse_database_info(head: bytes) -> DatabaseInfo | None:
    """Read the TOC of a custom-format archive from its first bytes (EOFError: need more)."""
    fh = io.BytesIO(head)
    r = _Reader(fh)
    if fh.read(5) != b"PGDMP":
        raise _Unsupported("not a custom-format archive")
    vmaj, vmin, _vrev = r.byte(), r.byte(), r.byte()
    version = (vmaj, vmin)
    if not (1, 12) <= version <= (1, 16):
        raise _Unsupported(f"archive version {vmaj}.{vmin}")
    r.int_size, r.off_size = r.byte(), r.byte()
    if r.byte() != 1:
        raise _Unsupported("not the custom format")
    if version >= (1, 15):
        r.byte()
    else:
        r.int()
    for _ in range(7):
        r.int()
    r.str(), r.str(), r.str()  # database name, server version, pg_dump version
    info: DatabaseInfo | None = None
    extra: list[tuple[str, str, str]] = []
    for _ in range(r.int()):
        r.int(), r.int()  # dump id, had dumper
        r.str(), r.str()  # tableoid, oid
        tag = _text(r.str())
        desc = _text(r.str())
        r.int()  # section
        defn = _text(r.str())
        r.str(), r.str()  # drop, copy
        r.str(), r.str()  # namespace, tablespace
        if version >= (1, 14):
            r.str()
        if version >= (1, 16):
            r.int()
        owner = _text(r.str())
        r.str()
        while r.str() is not None:
            pass
        r.byte()
        fh.seek(r.off_size, 1)
        if desc == "DATABASE":
            info = DatabaseInfo(name=tag, owner=owner or None, create_sql=defn)
        elif desc in ("DATABASE PROPERTIES", "COMMENT", "ACL"):
            extra.append((desc, tag, defn))
    if info is None:
        return None
    for desc, tag, defn in extra:
        if desc == "DATABASE PROPERTIES" and tag == info.name:
            info.properties += statements(defn)
        elif desc != "DATABASE PROPERTIES" and tag.startswith("DATABASE ") and _unquote(tag[9:]) == info.name:
            (info.comment if desc == "COMMENT" else info.acl).extend(statements(defn))
    return info


def _text(b: bytes | None) -> str:
    return b.decode("utf-8", errors="surrogateescape") if b is not None else ""
