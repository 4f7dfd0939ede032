"""`posterity doctor` for Meilisearch and files sources.

Meilisearch: the server answers, its version is one Posterity supports (1.x), the key allows
what each configured mode does (read from the key's own definition when the key may list keys,
else by asking the read routes each mode uses), and the snapshot/dump folders are readable
here. Files: every configured path exists and can be read (folders walked for unreadable
entries, up to a bound).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from .context import Context
from .doctor import FAIL, OK, WARN, Check, guarded

#: Actions each mode needs (Meilisearch's API key action names).
MODE_ACTIONS = {
    "snapshot": ["snapshots.create", "tasks.get", "version"],
    "dump": ["dumps.create", "tasks.get", "version"],
    "export": ["indexes.get", "documents.get", "settings.get", "stats.get", "version"],
}
#: The read routes probed when the key's definition cannot be read.
_READ_ROUTES = {"version": "/version", "stats.get": "/stats", "indexes.get": "/indexes", "tasks.get": "/tasks"}
MAX_WALK = 100_000


def meilisearch(ctx: Context, name: str, cfg: Any) -> Iterator[Check]:
    from ..sources.meilisearch.source import MeilisearchSource

    src = MeilisearchSource(name, cfg)
    client = src.client
    try:
        reach = guarded("meilisearch reachable", lambda: Check("meilisearch reachable", OK,
                                                               f"{client.where}: {client.health()}"))
        yield from reach
        if reach[0].status == FAIL:
            return
        yield from guarded("meilisearch version", lambda: _version(client))
        yield from guarded("api key", lambda: _key(client, cfg))
        for mode, folder in (("snapshot", cfg.snapshot_dir), ("dump", cfg.dump_dir)):
            if mode in cfg.modes and folder is not None:
                yield from guarded(f"{mode} folder", partial(_folder, mode, Path(folder)))
    finally:
        client.close()


def _version(client: Any) -> Check:
    version = client.version()
    if version.split(".")[0] == "1":
        return Check("meilisearch version", OK, version)
    return Check("meilisearch version", WARN, f"{version}: Posterity is tested with Meilisearch 1.x",
                 "Run a drill (`posterity drill`) before you rely on backups of this version.")


def _key(client: Any, cfg: Any) -> Check:
    from ..errors import SourceAuthError

    needed = sorted({a for m in cfg.modes for a in MODE_ACTIONS[m]})
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    try:
        keys = client.keys()
    except SourceAuthError:  # 401/403: this key may not list keys
        keys = None
    if keys is not None:
        mine = next((k for k in keys if key and k.get("key") == key), None)
        if mine is None:
            return Check("api key", OK, "the key may list keys and is not one of them: the master key (every action)")
        actions = set(mine.get("actions") or [])
        missing = [a for a in needed if "*" not in actions and a not in actions
                   and f"{a.split('.')[0]}.*" not in actions]
        if missing:
            return Check("api key", FAIL, f"the key lacks {', '.join(missing)} (modes {', '.join(cfg.modes)})",
                         "Create a key with those actions (or use the master key for snapshot/dump).")
        return Check("api key", OK, f"the key allows {', '.join(needed)}")
    denied = []
    for action, route in _READ_ROUTES.items():
        if action not in needed:
            continue
        try:
            client.get(route)
        except SourceAuthError:
            denied.append(action)
    if denied:
        return Check("api key", FAIL, f"the key is refused {', '.join(denied)}",
                     "Use a key with the actions each mode needs (see docs/meilisearch.md).")
    creates = [a for a in needed if a.endswith(".create")]
    if creates:
        return Check("api key", WARN, f"read routes answer; {', '.join(creates)} cannot be checked without the key "
                     "listing keys", "Run one backup by hand (or a drill) to prove it.")
    return Check("api key", OK, f"the key may {', '.join(a for a in needed if a in _READ_ROUTES)}")


def _folder(mode: str, folder: Path) -> Check:
    if not folder.is_dir():
        return Check(f"{mode} folder", FAIL, f"{folder} does not exist on this host",
                     f"Posterity must run on the Meilisearch host for mode {mode}; set {mode}_dir to its folder.")
    if not os.access(folder, os.R_OK | os.X_OK):
        return Check(f"{mode} folder", FAIL, f"{folder} is not readable by this user",
                     "Add the user running Posterity to the meilisearch group (and let the group read the folder).")
    return Check(f"{mode} folder", OK, f"{folder} readable")


def files(ctx: Context, name: str, cfg: Any) -> Iterator[Check]:
    for path in cfg.paths:
        yield from guarded(f"path {path}", partial(_path, Path(path)))


def _path(p: Path) -> Check:
    name = f"path {p}"
    if not p.exists() and not p.is_symlink():
        return Check(name, FAIL, f"{p} does not exist", "Fix the path in paths, or remove it.")
    if p.is_file() or not p.is_dir():
        ok = os.access(p, os.R_OK)
        return Check(name, OK if ok else FAIL, "readable" if ok else "not readable by this user",
                     "" if ok else "Run Posterity as a user that can read it (root for /etc).")
    unreadable, seen = [], 0
    for root, dirs, names in os.walk(p, onerror=lambda e: unreadable.append(e.filename)):
        for n in names:
            seen += 1
            full = os.path.join(root, n)
            if not os.path.islink(full) and not os.access(full, os.R_OK):
                unreadable.append(full)
        seen += len(dirs)
        if seen > MAX_WALK:
            break
    if unreadable:
        shown = ", ".join(str(u) for u in unreadable[:3]) + (f" and {len(unreadable) - 3} more"
                                                             if len(unreadable) > 3 else "")
        return Check(name, FAIL, f"cannot read {shown}", "Run Posterity as a user that can read them (root for /etc).")
    return Check(name, OK, f"{seen} entries readable" + (" (walk stopped at the bound)" if seen > MAX_WALK else ""))
