"""Open the repository a configuration names: the one place above ``storage/`` that builds an
ObjectStore from ``[repository]`` (the Repository then holds it; nothing above does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..storage import open_store
from .repository import Repository


def open_repository(r: Any, *, cache_dir: Path | None = None, lock_ttl: int = 3600) -> Repository:
    """``r`` is the ``[repository]`` section (``config.RepositoryConfig``)."""
    store = open_store(
        r.url,
        endpoint=r.endpoint,
        region=r.region,
        access_key_id=r.access_key_id.get_secret_value() if r.access_key_id else None,
        secret_access_key=r.secret_access_key.get_secret_value() if r.secret_access_key else None,
        connect_timeout=r.connect_timeout,
        request_timeout=r.request_timeout,
        max_part_size_mib=r.max_part_size_mib,
    )
    return Repository(store, cache_dir=cache_dir, lock_ttl=lock_ttl)
