"""Exclusive locks in the object store: create-if-absent, with an owner and an expiry.

A lock is ``locks/<name>.json`` written with ``If-None-Match: *``. A lock whose expiry has
passed (its owner died), or whose owner is provably gone (``owner.py``: same kernel by boot
id, and its process or its whole pid namespace no longer exists, or the machine rebooted),
is taken over with a message; a live one raises ``LockHeld`` naming its owner. Expiry is generous (default one hour) and a long operation refreshes nothing:
choose ``general.lock_ttl`` above the longest backup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from ..errors import LockHeld, ObjectExists, ObjectNotFound
from ..storage import ObjectStore
from .layout import LOCKS_PREFIX, lock_key
from .owner import identity, owner_is_gone

log = logging.getLogger(__name__)


def _read(store: ObjectStore, key: str) -> dict | None:
    try:
        raw = json.loads(store.get_bytes(key))
        return raw if isinstance(raw, dict) else {}
    except ObjectNotFound:
        return None
    except ValueError:
        return {}


@contextmanager
def exclusive_lock(store: ObjectStore, name: str, op: str, ttl: int = 3600) -> Iterator[dict]:
    key = lock_key(name)
    now = datetime.now(UTC)
    body = {
        "name": name,
        "operation": op,
        **identity(),
        "created": now.isoformat(),
        "expires": (now + timedelta(seconds=ttl)).isoformat(),
    }
    data = json.dumps(body, indent=2).encode()
    try:
        store.put(key, data, if_absent=True)
    except ObjectExists:
        held = _read(store, key)
        if held is None:  # released between our put and our read: try once more
            store.put(key, data, if_absent=True)
        else:
            expires = held.get("expires")
            try:
                expired = expires is not None and datetime.fromisoformat(expires) < now
            except ValueError:
                expired = True
            gone = None if expired else owner_is_gone(held)
            dead = gone is not None
            if not expired and not dead:
                raise LockHeld(
                    f"The lock {name!r} is held by {held.get('operation', '?')} on {held.get('host', '?')} "
                    f"(pid {held.get('pid', '?')}) since {held.get('created', '?')}.",
                    hint=f"Wait for it to finish. If that process is gone, run `posterity unlock {name}`; "
                    f"it expires by itself at {expires}.",
                ) from None
            log.warning(
                "Taking over the %s lock %r of %s on %s (%s).",
                "stale" if dead else "expired",
                name,
                held.get("operation"),
                held.get("host"),
                gone if dead else f"expired {expires}",
            )
            store.delete([key])
            store.put(key, data, if_absent=True)
    try:
        yield body
    except BaseException:
        # The operation failed: its error is the one to report. A release that fails too
        # (the store is gone) must not replace it; the lock then expires or is taken over.
        try:
            _release(store, key, body)
        except Exception as exc:
            log.warning("Could not release the lock %r (%s).", name, exc)
        raise
    _release(store, key, body)


def _release(store: ObjectStore, key: str, body: dict) -> None:
    """Remove the lock at ``key`` if it is still ours."""
    current = _read(store, key)
    if current is not None and current.get("pid") == body["pid"] and current.get("created") == body["created"]:
        store.delete([key])


def list_locks(store: ObjectStore) -> list[dict]:
    out = []
    for info in store.list(LOCKS_PREFIX):
        held = _read(store, info.key) or {}
        held["key"] = info.key
        out.append(held)
    return out


def remove_lock(store: ObjectStore, name: str) -> bool:
    key = lock_key(name)
    if store.stat(key) is None:
        return False
    store.delete([key])
    return True
