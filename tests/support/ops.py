"""Helpers for the operations tests (prune, status, audit, scheduler): a configured
Context over a real repository, backups taken at chosen times, and a store wrapper that
records the order of deletes."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyrage

from posterity.config import loads_config
from posterity.operations.context import Context
from posterity.storage.base import ObjectInfo, ObjectStore


def make_keys(folder: Path) -> tuple[str, Path]:
    ident = pyrage.x25519.Identity.generate()
    path = folder / "key.txt"
    path.write_text(f"{ident}\n")
    return str(ident.to_public()), path


def config_text(
    url: str,
    recipient: str,
    identity: Path,
    state_dir: Path,
    sources: dict[str, str],
    extra: str = "",
    repo_extra: str = "",
) -> str:
    body = [
        "[repository]",
        f'url = "{url}"',
        repo_extra,
        "[encryption]",
        f'recipients = ["{recipient}"]',
        f'identity_file = "{identity}"',
        "[general]",
        f'state_dir = "{state_dir}"',
        f'staging_dir = "{state_dir / "staging"}"',
    ]
    for name, dsn in sources.items():
        body += [f"[sources.{name}]", 'kind = "postgres"', f'dsn = "{dsn}"', "globals = false"]
    return "\n".join(body) + "\n" + extra


def make_context(text: str) -> Context:
    return Context(loads_config(text))


def s3_repo_extra(s3_server: Any, endpoint: str | None = None) -> str:
    kw = s3_server.store_kwargs(endpoint)
    return (
        f'endpoint = "{kw["endpoint"]}"\nregion = "{kw["region"]}"\n'
        f'access_key_id = "{kw["access_key_id"]}"\nsecret_access_key = "{kw["secret_access_key"]}"'
    )


class FrozenNow:
    """Patch ``datetime`` in a module so ``datetime.now()`` returns a chosen time."""

    def __init__(self, monkeypatch: Any, *modules: str) -> None:
        self.when: datetime | None = None
        real = datetime
        holder = self

        class _DT(real):  # type: ignore[misc,valid-type]
            @classmethod
            def now(cls, tz=None):
                if holder.when is None:
                    return real.now(tz)
                return holder.when if tz is None else holder.when.astimezone(tz)

        for m in modules:
            monkeypatch.setattr(f"{m}.datetime", _DT)


class RecordingStore(ObjectStore):
    """Delegates to a real store and records every delete call, in order."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.location = inner.location
        self.deletes: list[list[str]] = []
        self._lock = threading.Lock()

    def put(self, key, data, *, if_absent=True, part_size=None) -> int:
        return self.inner.put(key, data, if_absent=if_absent, part_size=part_size)

    def get(self, key: str) -> Iterator[bytes]:
        return self.inner.get(key)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self._lock:
            self.deletes.append(keys)
        self.inner.delete(keys)

    def check(self) -> None:
        self.inner.check()

    def delete_position(self, key: str) -> int:
        for i, batch in enumerate(self.deletes):
            if key in batch:
                return i
        raise AssertionError(f"{key} was never deleted")


def keys_of(store: ObjectStore, prefix: str = "") -> set[str]:
    return {i.key for i in store.list(prefix)}


def files_context(tmp_path):
    """A context with one files source ``config`` (a folder holding conf/app.toml) and a local
    repository, not yet initialised."""
    live = tmp_path / "live"
    (live / "conf").mkdir(parents=True)
    (live / "conf" / "app.toml").write_text("answer = 42\n")
    recipient, identity = make_keys(tmp_path)
    extra = f'[sources.config]\nkind = "files"\npaths = ["{live}"]\n'
    return make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state", {}, extra))
