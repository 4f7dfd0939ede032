"""Exclusive locks in the object store: create-if-absent, with an owner and an expiry.

A lock is ``locks/<name>.json`` written with ``If-None-Match: *``. A lock whose expiry has
passed (its owner died), or whose owner was a process on this host that no longer runs,
is taken over with a message; a live one raises ``LockHeld`` naming its owner. Expiry is generous (default one hour) and a long operation refreshes nothing:
choose ``general.lock_ttl`` above the longest backup.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from ..errors import LockHeld, ObjectExists, ObjectNotFound
from ..storage import ObjectStore
from .layout import lock_key

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
        "host": socket.gethostname(),
        "pid": os.getpid(),
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
            dead = not expired and _owner_is_dead(held)
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
                f"its process {held.get('pid')} is no longer running" if dead else f"expired {expires}",
            )
            store.delete([key])
            store.put(key, data, if_absent=True)
    try:
        yield body
    finally:
        # Remove only our own lock.
        current = _read(store, key)
        if current is not None and current.get("pid") == body["pid"] and current.get("created") == body["created"]:
            store.delete([key])


def _owner_is_dead(held: dict) -> bool:
    """True when the owner ran on this host and its process is gone (killed, crashed):
    waiting for the expiry would only make the next scheduled run fail."""
    pid = held.get("pid")
    if held.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def list_locks(store: ObjectStore) -> list[dict]:
    out = []
    for info in store.list("locks/"):
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
