"""The kinds of source, and what each kind is: its traits. The one place that spells a kind.

Code outside a kind's own package never tests ``kind == "…"``; it asks a trait
(``traits(kind).wal_archive``) or one of the helpers below. A new kind is one entry in
``TRAITS`` (and one in ``sources/registry.py`` for its config model, class and checks).

Lean on purpose: no pydantic, no project imports. ``cli/walfast.py`` (PostgreSQL's
archive_command, one process per WAL segment) and ``repository/`` import it, so it lives
beside ``errors.py`` rather than in ``sources/`` (whose package imports the config models).
"""

from __future__ import annotations

from typing import Any, NamedTuple

POSTGRES = "postgres"
POSTGRES_PHYSICAL = "postgres-physical"
MEILISEARCH = "meilisearch"
FILES = "files"

# Artifact kinds whose meaning code outside their source relies on.
PG_DUMP_CUSTOM = "pg_dump-custom"  # a whole pg_dump custom-format archive
PG_DUMP_CUSTOM_DATA = "pg_dump-custom-data"  # a split backup's data part (some tables' rows)


class Traits(NamedTuple):  # (not a dataclass: importing dataclasses costs the archive_command ~6 ms)
    """What code outside the kind's package may ask about a kind."""

    # Base backups plus a WAL archive: `wal push/fetch/status`, the archiving watch, WAL chain
    # checks in verify, WAL retention in prune, point-in-time recovery.
    wal_archive: bool = False
    # Runs a WAL streamer (pg_receivewal through a managed slot) when its config says wal = "stream".
    streams_wal: bool = False
    # Position in a restore point's restore (lower first); None: a point cannot restore it.
    point_order: int | None = None
    # Its manifests list every file (``facts["files"]``): `diff` and unchanged-tree detection.
    file_list: bool = False
    # "module:function" printing the kind's own facts in `posterity show` (None: nothing extra).
    show_facts: str | None = None


TRAITS: dict[str, Traits] = {
    POSTGRES: Traits(point_order=0),
    MEILISEARCH: Traits(point_order=1, show_facts="posterity.cli.meilisearch:show_facts"),
    FILES: Traits(point_order=2, file_list=True),
    POSTGRES_PHYSICAL: Traits(wal_archive=True, streams_wal=True),
}
KINDS: tuple[str, ...] = tuple(sorted(TRAITS))
_NONE = Traits()


def traits(kind: Any) -> Traits:
    """The traits of ``kind`` (an unknown kind, e.g. from a newer version's manifest, has none)."""
    return TRAITS.get(kind, _NONE) if isinstance(kind, str) else _NONE


def of(obj: Any) -> Traits:
    """The traits of anything with a ``kind`` (a source config, a manifest, a point member)."""
    return traits(getattr(obj, "kind", None))


def with_trait(name: str) -> tuple[str, ...]:
    """The kinds whose trait ``name`` is set (truthy), sorted."""
    return tuple(k for k in KINDS if getattr(TRAITS[k], name))


def runs_wal_streamer(cfg: Any) -> bool:
    """A source config that runs a WAL streamer: its kind streams WAL and it says wal = "stream"."""
    return of(cfg).streams_wal and getattr(cfg, "wal", None) == "stream"


def archives_by_command(cfg: Any) -> bool:
    """A source config whose WAL PostgreSQL pushes through archive_command (wal = "archive"): the
    archiving watch (failing archiver, .ready backlog, pg_wal disk) applies to it."""
    return of(cfg).wal_archive and getattr(cfg, "wal", None) == "archive"


def point_restore_order() -> tuple[str, ...]:
    """The kinds a restore point can restore, in the order it restores them."""
    order = [(t.point_order, k) for k, t in TRAITS.items() if t.point_order is not None]
    return tuple(k for _, k in sorted(order))
