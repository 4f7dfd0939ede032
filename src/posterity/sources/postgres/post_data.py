"""Indexes, constraints and triggers built while other tables still load.

Given one archive, ``pg_restore -j N`` starts a table's indexes as soon as that table's rows
are in. A split backup is loaded archive by archive (``parallel_restore``); without this
plan its post-data section waited for the last archive, and on a database of many tables
that left the cores idle for a quarter of the restore. The plan reads the schema archive's
table of contents and says, for each data archive that finishes, which post-data entries
may now run: those whose every table is loaded.

Conservative on purpose (everything it leaves out runs at the end, as before):
- only ``INDEX``, ``CONSTRAINT`` (primary key, unique, exclusion, on ``ONLY`` the table),
  ``FK CONSTRAINT`` (referencing a key in the archive) and ``TRIGGER`` entries run early,
  with the comments and security labels on them;
- an entry waits for every table it depends on, directly or through another post-data
  entry (a foreign key waits for both tables and the referenced key);
- anything on a materialized view, and whole databases with partitioned tables (a trigger
  or foreign key on a partitioned table is cloned to partitions that may still be loading),
  wait for the end;
- a table is matched to its archive by ``schema.name``; names the archive's encoding may
  spell differently (not UTF-8 or SQL_ASCII), two tables that spell the same, or a name of
  the data archives that the schema archive does not spell, turn the plan off;
- what the last archive to load would let run waits for the final ``-j N`` run instead
  (nothing else loads then, and one run per slot would build those indexes one by one).

A trigger is never created on a table that still loads (it would fire on the restored rows),
and a foreign key never on a table whose referenced rows are not all in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .archive_toc import SECTION_NONE, SECTION_POST_DATA, TocEntry, TocUnreadable, read_toc

log = logging.getLogger(__name__)

ATTACHED_KINDS = frozenset({"COMMENT", "SECURITY LABEL"})  # SECTION_NONE entries that follow their object


@dataclass
class PostDataPlan:
    """Which post-data entries each finished data archive lets run, in archive order."""

    post: list[TocEntry]  # every entry ``--section=post-data`` would restore, in archive order
    needs: dict[int, frozenset[str]] = field(default_factory=dict)  # early entry -> archives it waits for
    tables: dict[int, frozenset[int]] = field(default_factory=dict)  # early entry -> tables it locks
    done: set[int] = field(default_factory=set)  # claimed for an early run

    def ready(self, loaded: set[str]) -> list[TocEntry]:
        """Claim the entries ``loaded`` archives now allow (their post-data dependencies are
        claimed before them, in archive order, so one list run in order satisfies them)."""
        batch = [e for e in self.post if e.dump_id in self.needs and e.dump_id not in self.done
                 and self.needs[e.dump_id] <= loaded]
        self.done.update(e.dump_id for e in batch)
        return batch

    def tables_of(self, batch: list[TocEntry]) -> frozenset[int]:
        """The tables (TOC ids) ``batch`` touches: two runs that share none cannot wait on
        each other's locks (a foreign key locks both its tables)."""
        return frozenset().union(*(self.tables[e.dump_id] for e in batch))

    def rest(self) -> list[TocEntry]:
        return [e for e in self.post if e.dump_id not in self.done]


def plan(schema: Path, archives: dict[str, list[str] | None]) -> PostDataPlan | None:
    """The plan for ``schema`` (the staged schema archive) and ``archives`` (data archive name
    -> its ``schema.table`` names, None for the rest archive); None: run post-data at the end."""
    try:
        toc = read_toc(schema)
    except TocUnreadable as exc:
        log.info("Indexes will be built after all data (the schema archive's contents: %s).", exc)
        return None
    reason = _unsafe(toc)
    if reason:
        log.info("Indexes will be built after all data: %s.", reason)
        return None
    return _plan(toc, archives)


def _unsafe(toc: list[TocEntry]) -> str | None:
    for e in toc:
        if e.desc == "ENCODING" and not any(enc in e.defn for enc in ("'UTF8'", "'SQL_ASCII'")):
            return "the database's encoding is not UTF-8"
        if e.desc == "TABLE" and "PARTITION BY" in e.defn:
            return "the database has partitioned tables"
        if e.desc in ("TABLE ATTACH", "INDEX ATTACH"):
            return "the database has partitions"
    names = [f"{e.namespace}.{e.tag}" for e in toc if e.desc == "TABLE"]
    if len(names) != len(set(names)):
        return "two tables share a schema.name spelling"
    return None


def _plan(toc: list[TocEntry], archives: dict[str, list[str] | None]) -> PostDataPlan | None:
    by_id = {e.dump_id: e for e in toc}
    home: dict[str, str] = {}
    rest = next((name for name, names in archives.items() if names is None), None)
    for name, names in archives.items():
        for t in names or ():
            home[t] = name
    spelled = {f"{e.namespace}.{e.tag}" for e in toc if e.desc == "TABLE"}
    if not set(home) <= spelled:
        # A table the archives name but the schema archive spells otherwise would fall to the
        # rest archive: its triggers could then be created before its rows are in.
        log.info("Indexes will be built after all data: %d table name(s) of the data archives are not in the "
                 "schema archive.", len(set(home) - spelled))
        return None
    post = _post_region(toc)
    in_post = {e.dump_id for e in post}
    result = PostDataPlan(post)
    for e in post:  # archive order: an entry's post-data dependencies come before it
        needs: set[str] | None = set()
        tables: set[int] = set()
        for dep in e.deps:
            d = by_id.get(dep)
            if d is None:
                continue  # not in the archive: pg_restore ignores it too
            if d.dump_id in in_post:
                if needs is not None and d.dump_id in result.needs:
                    needs |= result.needs[d.dump_id]
                    tables |= result.tables[d.dump_id]
                else:
                    needs = None
            elif d.desc == "TABLE":
                archive = home.get(f"{d.namespace}.{d.tag}", rest)
                if archive is None or needs is None:
                    needs = None
                else:
                    needs.add(archive)
                    tables.add(d.dump_id)
            elif d.desc == "MATERIALIZED VIEW":
                needs = None
        eligible = _early_kind(e, in_post) or (e.section == SECTION_NONE and e.desc in ATTACHED_KINDS
                                               and any(d in result.needs for d in e.deps))
        if eligible and needs:
            result.needs[e.dump_id] = frozenset(needs)
            result.tables[e.dump_id] = frozenset(tables)
    return result


def _early_kind(e: TocEntry, in_post: set[int]) -> bool:
    """Kinds that may run before the end, with pg_dump's own definitions checked:
    - a CONSTRAINT only as a primary key, unique or exclusion constraint on ``ONLY`` its table
      (a NOT VALID or NOT NULL constraint added without ONLY would reach inheritance children
      that may still be loading);
    - a FK CONSTRAINT only when it depends on the key it references (an entry of this archive):
      a key of a table outside the archive (an extension's configuration table, whose rows are
      in the rest archive) is not a dependency, and the key would be checked against rows not
      yet loaded."""
    if e.desc in ("INDEX", "TRIGGER"):
        return True
    defn = " ".join(e.defn.split())
    if e.desc == "CONSTRAINT":
        return defn.startswith("ALTER TABLE ONLY ") and any(
            f" {kind} " in defn or f" {kind}(" in defn for kind in ("PRIMARY KEY", "UNIQUE", "EXCLUDE"))
    if e.desc == "FK CONSTRAINT":
        return defn.startswith("ALTER TABLE ONLY ") and any(d in in_post for d in e.deps)
    return False


def _post_region(toc: list[TocEntry]) -> list[TocEntry]:
    """The entries ``pg_restore --section=post-data`` restores: post-data ones, and the
    section-less ones (comments, ACLs) that follow them in the archive."""
    out: list[TocEntry] = []
    current = 0
    for e in toc:
        if e.section != SECTION_NONE:
            current = e.section
        if current == SECTION_POST_DATA:
            out.append(e)
    return out


def write_list(path: Path, entries: Iterable[TocEntry]) -> Path:
    """A ``pg_restore -L`` file: one entry per line, in the order given."""
    lines = [f"{e.dump_id}; {e.desc} {e.namespace} {e.tag}".replace("\n", " ") for e in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    return path
