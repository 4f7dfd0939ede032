"""Probes of the object store for `posterity doctor` and for archive_command's dry run.

``write_probe`` creates one small object under ``probes/`` with create-if-absent (the same
conditional write locks and manifests rely on), reads back its time to measure the clock
skew between this host and the store, and deletes it. A failed delete is reported, not
raised: under an R2 bucket lock the probe may stay until the rule lets it go.

``PROBE_ENV``: when set, ``posterity wal push`` and ``posterity-wal push`` stop after loading
the configuration and reaching the repository, store nothing and exit 0. `posterity doctor`
runs the server's real archive_command this way, as the data directory's owner, to prove
the command, its Python, the configuration and the repository all work for that user.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import ObjectNotFound, PosterityError, RepositoryNotInitialised
from ..storage import ObjectStore
from . import layout

PROBE_ENV = "POSTERITY_ARCHIVE_PROBE"


@dataclass
class WriteProbe:
    key: str
    skew_seconds: float | None  # store time minus local time; None when the store gives no time
    deleted: bool
    delete_error: str | None = None


def require_repository(store: ObjectStore) -> None:
    """The store answers and holds a Posterity repository (the archive_command dry run)."""
    store.check()
    if store.stat(layout.DESCRIPTOR) is None:
        raise RepositoryNotInitialised(f"No Posterity repository at {store.location} (no {layout.DESCRIPTOR}).")


def write_probe(store: ObjectStore) -> WriteProbe:
    before = datetime.now(UTC)
    key = layout.probe_key(before, socket.gethostname())
    body = json.dumps({"probe": "posterity doctor", "time": before.isoformat()}).encode()
    store.put(key, body, if_absent=True)
    after = datetime.now(UTC)
    info = store.stat(key)
    if info is None:
        raise ObjectNotFound(f"The probe {key} was written but cannot be found at {store.location}.",
                             hint="The store does not read its own writes; check the endpoint.")
    skew = None
    if info.modified is not None:
        stamp = info.modified if info.modified.tzinfo else info.modified.replace(tzinfo=UTC)
        midpoint = before + (after - before) / 2
        # Stores keep whole seconds: within the write's own duration plus a second is no skew.
        raw = (stamp - midpoint).total_seconds()
        slack = (after - before).total_seconds() / 2 + 1.0
        skew = 0.0 if abs(raw) <= slack else raw - slack if raw > 0 else raw + slack
    try:
        store.delete([key])
        return WriteProbe(key, skew, deleted=True)
    except PosterityError as exc:
        return WriteProbe(key, skew, deleted=False, delete_error=exc.message)
