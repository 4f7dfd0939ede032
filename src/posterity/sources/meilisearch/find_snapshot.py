"""Which file a snapshot task wrote.

Meilisearch names a snapshot after the last component of ``--db-path``:
``<snapshot-dir>/<name>.snapshot`` (``crates/index-scheduler/src/scheduler/
process_snapshot_creation.rs``; ``index-scheduler/src/batch.rs`` up to v1.12), so the default
``--db-path data.ms`` gives ``data.ms.snapshot`` but ``/var/lib/meilisearch/data`` gives
``data.snapshot``. It writes a temporary file in the folder and renames it into place, so the
file the task produced is the one ``*.snapshot`` whose inode or modification time changed.

With ``db_path`` in the config the name is known; without it, the one changed file is taken,
and anything else (none, or several) is refused rather than guessed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import SourceError

Listing = dict[str, tuple[int, int]]


class SnapshotNotFound(SourceError):
    """The snapshot task succeeded but its file cannot be identified."""


def listing(folder: Path) -> Listing:
    """``name → (inode, mtime_ns)`` of every ``*.snapshot`` in ``folder`` (empty if unreadable)."""
    out: Listing = {}
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(".snapshot") and entry.is_file():
                    st = entry.stat()
                    out[entry.name] = (st.st_ino, st.st_mtime_ns)
    except OSError:
        pass
    return out


def written(folder: Path, db_path: Path | None, before: Listing, task_uid: int) -> Path:
    """The snapshot file task ``task_uid`` wrote in ``folder``."""
    after = listing(folder)
    if db_path is not None:
        name = f"{db_path.name or 'data.ms'}.snapshot"
        if name in after and before.get(name) == after[name]:
            raise SnapshotNotFound(
                f"{folder / name} was not written by snapshot task {task_uid} (unchanged since before the task); "
                "nothing was committed.",
                hint="db_path must be the --db-path and snapshot_dir the --snapshot-dir of the server at url.",
            )
        return folder / name
    changed = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
    if len(changed) == 1:
        return folder / changed[0]
    hint = (
        "snapshot_dir must be the --snapshot-dir of the Meilisearch server at url, on this host; set db_path to "
        "its --db-path so Posterity knows the file name (<last component of --db-path>.snapshot)."
    )
    if not changed:
        raise SnapshotNotFound(
            f"Meilisearch reported snapshot task {task_uid} done, but no *.snapshot file in {folder} was written "
            "by it; nothing was committed.",
            hint=hint,
        )
    raise SnapshotNotFound(
        f"Snapshot task {task_uid} finished while several snapshot files in {folder} changed "
        f"({', '.join(changed)}); nothing was committed rather than guess which one is this server's.",
        hint="Set db_path to the server's --db-path (or give each server its own --snapshot-dir).",
    )
