"""An in-repo Meilisearch test server (see ``server.py``).

Known differences from real Meilisearch v1.12:
- search is a plain substring match of every query word (no ranking, typos or facets);
- filters support only ``field = value`` / ``field != value`` joined by ``AND``;
- every task is its own batch (no auto-batching);
- ``_vectors`` are stored and returned exactly as sent (no embedder checks or normalisation);
- snapshots use the test server's own format inside ``data.ms.snapshot``.
"""

from .archive import MeiliStartupError
from .server import MeiliTestServer
from .store import MeiliError, derive_key

__all__ = ["MeiliError", "MeiliStartupError", "MeiliTestServer", "derive_key"]
