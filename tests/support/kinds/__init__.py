"""Per-kind adapters for the Source contract suite (tests/test_source_contract.py).

Each adapter owns one project (posterity.toml, key, a file:// repository) with one source of
its kind holding known data, and knows, for that kind only: how to read the data back for a
comparison, how to destroy it, the ``restore`` options that bring it back, how to make the
next dump fail midway (a real failure of the producer, not a mock), and how to run the
by-hand commands ``posterity show`` prints with the standard tools (age, zstd, pg_restore,
tar, jq/curl).

The suite drives Posterity only through its command line (``run_in_process``), so it keeps
working whatever the code behind the commands looks like.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .base import Kind, Store
from .files import READ_FAILS, Files
from .meilisearch import Meilisearch
from .physical import Physical
from .postgres import Postgres

__all__ = ["ADAPTERS", "READ_FAILS", "Files", "Kind", "Meilisearch", "Physical", "Postgres", "Store"]

#: kind id → a function making its adapter in a test's tmp_path, with the repository in a
#: local folder (``store`` None) or elsewhere; fixtures come from ``request`` (the session's
#: PostgreSQL cluster, the session's archiving cluster).
ADAPTERS: dict[str, Callable[[Path, pytest.FixtureRequest, Store | None], Kind]] = {
    "postgres": lambda tmp, request, store: Postgres(tmp, request.getfixturevalue("pg_cluster"), False, store),
    "postgres-split": lambda tmp, request, store: Postgres(tmp, request.getfixturevalue("pg_cluster"), True, store),
    "postgres-physical": lambda tmp, request, store: Physical(tmp, request.getfixturevalue("archiving_cluster"), store),
    "meilisearch": lambda tmp, request, store: Meilisearch(tmp, store),
    "files": lambda tmp, request, store: Files(tmp, store),
}
