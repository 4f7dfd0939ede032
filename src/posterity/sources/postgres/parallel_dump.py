"""Split logical backups: one schema archive plus data archives, all from one snapshot.

Layout (every object is still a standard ``pg_dump -Fc`` archive, readable by ``pg_restore``):

- ``<db>.schema.pgdump`` (kind ``pg_dump-custom-schema``): ``--section=pre-data
  --section=post-data`` — tables, types, functions, then indexes, constraints, triggers;
- ``<db>.data-NNN.pgdump`` (kind ``pg_dump-custom-data``): ``--section=data -t …`` for one
  large table, or a batch of smaller ones packed to about ``part_size_mib``;
- ``<db>.data-rest.pgdump`` (kind ``pg_dump-custom-data``): ``--section=data`` with every
  table of the numbered archives excluded, so nothing is missed: the small tables, sequence
  values and large objects land here.

Every pg_dump runs with ``--snapshot`` of the one transaction ``PostgresSource.dump`` holds,
so all archives, the recorded LSN and the row counts describe one moment. The snapshot
lives only as long as that transaction: the source waits until every pg_dump it started has
ended (``Parts.wait``) before it lets the transaction go.

A database smaller than ``part_size_mib`` (or ``jobs = 1``) keeps the single-archive layout.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..base import Artifact

SCHEMA_KIND = "pg_dump-custom-schema"
DATA_KIND = "pg_dump-custom-data"
MAX_JOBS = 8
#: More archives than this only adds pg_dump start-ups (each reads the whole catalog).
MAX_PARTS = 64
MiB = 1 << 20

# Ordinary tables only: partitioned parents hold no rows, matview data is post-data.
# Sizes from pg_class.relpages (as of the last VACUUM/ANALYZE), not pg_table_size(): that
# opens each table, so a migration's lock would make the plan wait without bound before any
# pg_dump (and its --lock-wait-timeout) runs. A never-analyzed table counts 0: it goes to
# the rest archive, which costs parallelism, never data.
TABLE_SIZES = """
select n.nspname, c.relname,
       (c.relpages::bigint + coalesce(t.relpages, 0)) * current_setting('block_size')::bigint
from pg_class c join pg_namespace n on n.oid = c.relnamespace
left join pg_class t on t.oid = c.reltoastrelid
where c.relkind = 'r'
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
  and n.nspname not like 'pg_temp%'
  and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')
order by 3 desc, 1, 2
"""


def default_jobs() -> int:
    """The number of cores, at most MAX_JOBS."""
    return max(1, min(MAX_JOBS, os.cpu_count() or 1))


def quote_pattern(schema: str, table: str) -> str:
    """An exact pg_dump -t pattern: inside double quotes, * ? . and regex characters are literal."""

    def q(s: str) -> str:
        return '"' + s.replace('"', '""') + '"'

    return f"{q(schema)}.{q(table)}"


@dataclass
class Part:
    """One data archive: ``tables`` (schema, name), or ``None`` for the catch-all rest."""

    name: str
    tables: list[tuple[str, str]] | None
    size: int


def plan_parts(tables: list[tuple[str, str, int]], database_size: int, jobs: int, part_bytes: int) -> list[Part]:
    """Cut the tables into data archives, largest first; [] means "keep one archive".

    A table of at least ``target`` bytes gets its own archive; smaller ones are packed into
    batches of about ``target``; what is left (and everything that is not a table's rows)
    goes to the rest archive. ``target`` grows with the database so there are about four
    archives per job: enough to keep every worker busy to the end, few enough to start.
    """
    if jobs <= 1 or database_size < part_bytes:
        return []
    total = sum(size for _, _, size in tables)
    target = max(part_bytes, total // (jobs * 4), 1)
    parts: list[Part] = []
    batch: list[tuple[str, str]] = []
    batch_size = 0
    for schema, table, size in tables:
        if len(parts) >= MAX_PARTS:
            break
        if size >= target:
            parts.append(Part("", [(schema, table)], size))
            continue
        if size <= 0:
            continue  # empty tables cost a pg_dump start-up each; the rest archive takes them
        batch.append((schema, table))
        batch_size += size
        if batch_size >= target:
            parts.append(Part("", batch, batch_size))
            batch, batch_size = [], 0
    if not parts:
        return []
    parts.sort(key=lambda p: -p.size)
    for i, p in enumerate(parts, 1):
        p.name = f"data-{i:03d}"
    covered = sum(p.size for p in parts)
    parts.append(Part("data-rest", None, max(database_size - covered, 0)))
    return parts


def data_argv(base: list[str], part: Part, parts: list[Part]) -> list[str]:
    """pg_dump arguments of one data archive (``base`` holds the program, snapshot and options)."""
    argv = [*base, "--section=data"]
    if part.tables is not None:
        argv += [f"--table={quote_pattern(s, t)}" for s, t in part.tables]
    else:
        for other in parts:
            argv += [f"--exclude-table-data={quote_pattern(s, t)}" for s, t in other.tables or []]
    return argv


@dataclass
class Parts:
    """The pg_dump processes of one split backup, so the snapshot outlives every import."""

    pending: list[tuple[threading.Event, Callable[[], None]]] = field(default_factory=list)
    #: A tracked pg_dump failed or was aborted: the backup fails, so the row counts (which
    #: may wait on the same lock) must be cancelled, not joined.
    failed: bool = False

    def track(self, art: Artifact) -> Artifact:
        done = threading.Event()
        self.pending.append((done, art.abort))
        finish, abort = art.finish, art.abort

        def finished() -> None:
            try:
                finish()
            except BaseException:
                self.failed = True
                raise
            finally:
                done.set()

        def aborted() -> None:
            self.failed = True
            try:
                abort()
            finally:
                done.set()

        art.finish, art.abort = finished, aborted
        return art

    def wait(self) -> None:
        """Until the consumer finished or aborted every tracked artifact (each is bounded by
        its own upload's timeouts, or killed on failure)."""
        for done, _ in self.pending:
            done.wait()

    def abort_pending(self) -> None:
        """Kill the pg_dumps the consumer will never finish (it failed or was interrupted)."""
        for done, abort in self.pending:
            if not done.is_set():
                try:
                    abort()
                finally:
                    done.set()


def split_artifacts(
    db: str,
    base: list[str],
    parts: list[Part],
    start: Callable[[list[str], str], tuple],
    tracker: Parts,
    excluded: list[str] | None = None,
) -> Iterator[Artifact]:
    """Yield the schema archive, then the data archives largest first.

    ``start(argv, what)`` runs one pg_dump and returns (stdout, finish, abort, cancel); it is
    called only when the consumer asks for the next artifact, so at most as many pg_dumps
    run as the consumer has workers.
    """
    schema_argv = [*base, "--section=pre-data", "--section=post-data"]
    stream, finish, abort, cancel = start(schema_argv, f"pg_dump (schema) of {db}")
    yield tracker.track(
        Artifact(
            name=f"{db}.schema.pgdump",
            kind=SCHEMA_KIND,
            stream=stream,
            expected_size=64 * MiB,
            facts={"database": db, "format": "custom", "sections": ["pre-data", "post-data"]},
            finish=finish,
            abort=abort,
            cancel=cancel,
        )
    )
    for part in sorted(parts, key=lambda p: -p.size):
        stream, finish, abort, cancel = start(data_argv(base, part, parts), f"pg_dump ({part.name}) of {db}")
        facts: dict = {"database": db, "format": "custom", "sections": ["data"]}
        if part.tables is not None:
            facts["tables"] = [f"{s}.{t}" for s, t in part.tables]
        else:
            facts["rest"] = True
        if excluded:  # verify cannot tell which listed tables these patterns emptied
            facts["exclude_table_data"] = excluded
        yield tracker.track(
            Artifact(
                name=f"{db}.{part.name}.pgdump",
                kind=DATA_KIND,
                stream=stream,
                expected_size=max(part.size, 64 * MiB),
                facts=facts,
                finish=finish,
                abort=abort,
                cancel=cancel,
            )
        )


def split_by_hand(manifest, globals_kind: str) -> list[str]:
    """Shell commands that restore a split backup with age, zstd and pg_restore only."""
    [schema] = manifest.artifacts_of_kind(SCHEMA_KIND)
    data = " ".join(f'"{a.key}"' for a in manifest.artifacts_of_kind(DATA_KIND))
    cmds = [
        f'rclone cat "$REPO/{schema.key}" | age -d -i key.txt | zstd -d > schema.pgdump'
        " && createdb NEWDB && pg_restore --exit-on-error --section=pre-data -d NEWDB schema.pgdump",
        f"for k in {data}; do "
        'rclone cat "$REPO/$k" | age -d -i key.txt | zstd -d | pg_restore --exit-on-error --data-only -d NEWDB'
        " || break; done",
        "pg_restore --exit-on-error --section=post-data -j 4 -d NEWDB schema.pgdump",
    ]
    cmds += [
        f'rclone cat "$REPO/{a.key}" | age -d -i key.txt | zstd -d | psql -X -d postgres'
        for a in manifest.artifacts_of_kind(globals_kind)
    ]
    return cmds
