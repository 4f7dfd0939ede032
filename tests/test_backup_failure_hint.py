"""A backup that fails after its dump started says that nothing was committed, whatever raised
the error: here Meilisearch's per-index stats request in the export's ``finish()`` (outside the
stream, so the encoder's own wording does not apply; operations/backup.py adds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.meili.store import MeiliError
from tests.support.kinds import ADAPTERS


def test_a_source_error_after_the_stream_says_nothing_was_committed(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    kind = ADAPTERS["meilisearch"](tmp_path, request, None)
    listed = kind.ok("--json", "list").json()
    routes = list(kind.server.api.routes)
    fetched: list[int] = []  # the export has read documents: its finish() comes next
    hit: list[int] = []
    wrapped = 0
    for i, (method, pattern, handler, action) in enumerate(routes):
        if method == "POST" and pattern.pattern.startswith("/indexes/") and "/documents/fetch" in pattern.pattern:

            def fetch(req: Any, handler: Any = handler) -> Any:
                fetched.append(1)
                return handler(req)

            kind.server.api.routes[i] = (method, pattern, fetch, action)
            wrapped += 1
        elif method == "GET" and pattern.pattern.startswith("/indexes/") and pattern.pattern.endswith("/stats/?"):

            def stats(req: Any, handler: Any = handler) -> Any:
                if fetched and req.args.get("uid") == "posters":
                    hit.append(1)
                    raise MeiliError(500, "internal", "disk I/O error while reading the stats", "internal")
                return handler(req)

            kind.server.api.routes[i] = (method, pattern, stats, action)
            wrapped += 1
    assert wrapped == 2, [p.pattern for _m, p, _h, _a in routes]
    try:
        failed = kind.run("backup", kind.source)
    finally:
        kind.server.api.routes = routes
    assert hit, "the backup never asked for the index's stats"
    assert failed.code != 0, failed.text
    assert "disk I/O error while reading the stats" in failed.err, failed.text
    assert "nothing was committed" in failed.err.lower(), failed.text
    assert kind.ok("--json", "list").json() == listed
