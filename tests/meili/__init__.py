"""An in-repo Meilisearch test server (see ``server.py``).

It emulates the Meilisearch version it is given (``versions.py``: per-version settings,
experimental features, ``retrieveVectors``, ``GET /tasks`` ``total``, ``POST /snapshots``,
dump contents, each rule citing the real source it copies). Known differences from the real
server, whatever the version:
- search is a plain substring match of every query word (no ranking, typos or facets);
- filters support only ``field = value`` / ``field != value`` joined by ``AND``;
- every task is its own batch (no auto-batching);
- ``_vectors`` are stored and returned exactly as sent (no embedder checks or normalisation);
- snapshots use the test server's own format, in ``<last component of data_dir>.snapshot``;
- no webhooks, index renaming/compaction, ``/fields``, document sort or similar documents;
- from v1.36 a default ``rankingRules`` is shown as the new default even if it was set explicitly.
"""

from .archive import MeiliStartupError
from .server import MeiliTestServer
from .store import MeiliError, derive_key

__all__ = ["MeiliError", "MeiliStartupError", "MeiliTestServer", "derive_key"]
