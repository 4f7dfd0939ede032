"""The files drill: restore into a temporary folder, compare every file with the manifest.

The latest (or chosen) backup is restored by the files restorer (``restorers/files.py``, ``restore_tar``:
sha256 of the stored object checked, tar extracted safely) into a fresh folder
``posterity-drill-*`` under ``[general] staging_dir`` (else ``$TMPDIR``). Then every entry of
the manifest's file list (``facts["files"]``) is looked up in that folder: files (and hard
links) must have the recorded size and sha256, symlinks the recorded target, folders must be
folders. Counts per type are reported as checks; a difference names the paths. The folder
is removed afterwards, also when the restore or a check fails.

``restore_seconds`` is the wall time of the restore itself (download, decrypt, decompress,
extract) — the RTO; hashing the restored tree counts only in ``total_seconds``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import LocalResourceError, RestoreTargetError
from .drill import DrillRun
from .drill_report import CheckResult

MAX_NAMED = 8
_HASH_CHUNK = 1 << 20


def drill_files(run: DrillRun) -> None:
    from ..sources.files.restore import tar_artifact
    from .restorers.files import RESTORER, FilesRestoreRequest

    report = run.report
    manifest = run.manifest
    art = tar_artifact(manifest)  # no tar: RestoreFailed before anything is created
    folder = _make_folder(run)
    report.target = f"temporary folder {folder}"
    try:
        run.progress.start(f"drill {manifest.source} {manifest.id}", art.raw_size)
        t0 = time.monotonic()
        try:
            # The kind's restorer, without the guard: the drill has its own audit record and report.
            result = RESTORER.run(run.ctx, manifest.source, manifest, run.identities, FilesRestoreRequest(to=folder),
                                  run.progress)
        finally:
            run.progress.stop()
        report.restore_seconds = round(time.monotonic() - t0, 3)
        report.bytes = result.bytes
        report.checks.extend(check_tree(folder, manifest.facts.get("files")))
    finally:
        _remove(run, folder)


def _make_folder(run: DrillRun) -> Path:
    parent = Path(run.ctx.staging_dir or tempfile.gettempdir())
    try:
        parent.mkdir(parents=True, exist_ok=True)
        need = int(run.manifest.facts.get("total_size") or 0)
        free = shutil.disk_usage(parent).free
        if need and free < need:
            raise LocalResourceError(
                f"The drill needs about {need >> 20} MiB in {parent} to restore backup "
                f"{run.manifest.id}, only {free >> 20} MiB are free; nothing was restored."
            )
        return Path(tempfile.mkdtemp(prefix="posterity-drill-", dir=parent))
    except OSError as exc:
        raise RestoreTargetError(
            f"Could not create a temporary folder for the drill in {parent}: {exc.strerror or exc}.",
            hint="Set [general] staging_dir (or TMPDIR) to a writable folder with room for the backup.",
        ) from exc


def _remove(run: DrillRun, folder: Path) -> None:
    try:
        _make_traversable(folder)
        shutil.rmtree(folder)
    except OSError as exc:
        if os.path.lexists(folder):
            run.report.cleanup = f"FAILED to remove the temporary folder {folder}: {exc}"
            run.report.warnings.append(run.report.cleanup)
            return
    run.report.cleanup = f"temporary folder {folder} removed"


def _make_traversable(folder: Path) -> None:
    """Give the owner rwx on every restored folder (a backed-up 0500 folder blocks rmtree)."""
    if os.geteuid() == 0:
        return
    for dirpath, dirnames, _ in os.walk(folder):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            with contextlib.suppress(OSError):
                st = os.lstat(p)
                if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
                    os.chmod(p, stat.S_IMODE(st.st_mode) | 0o700)


def _sha256(path: str) -> str:
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except PermissionError:
        # A file backed up as 0000 (say, by root) and restored by another user: it is our copy.
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o400)
        fh = open(path, "rb")  # noqa: SIM115
    with fh:
        h = hashlib.sha256()
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _problem(root: Path, rec: dict[str, Any]) -> str | None:
    """What is wrong with one restored entry, or None."""
    kind = rec.get("type")
    path = os.path.join(root, str(rec.get("path")))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if kind == "dir":
        return None if stat.S_ISDIR(st.st_mode) else "not a folder"
    if kind == "symlink":
        if not stat.S_ISLNK(st.st_mode):
            return "not a symlink"
        target = os.readlink(path)
        want = str(rec.get("target", ""))
        return None if target == want else f"points to {target!r}, not {want!r}"
    if kind in ("file", "hardlink"):
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if kind == "file" and st.st_size != int(rec.get("size") or 0):
            return f"{st.st_size} bytes, not {int(rec.get('size') or 0)}"
        recorded = rec.get("sha256")
        if recorded:
            try:
                got = _sha256(path)
            except OSError as exc:
                return f"unreadable: {exc.strerror or exc}"
            if got != recorded:
                return "sha256 differs from the one recorded at backup time"
        return None
    return None  # a type this version does not know: restored by the tar, not compared


def check_tree(root: Path, records: Any) -> list[CheckResult]:
    """Compare the restored folder ``root`` with the manifest's file list."""
    if not isinstance(records, list):
        return [
            CheckResult(
                "file list",
                True,
                "the backup recorded no file list; only the restore itself (sha256 of the stored "
                "tar) was checked",
            )
        ]
    groups: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "files": ("size and sha256 as recorded", []),
        "symlinks": ("targets as recorded", []),
        "folders": ("present", []),
    }
    kind_group = {"file": "files", "hardlink": "files", "symlink": "symlinks", "dir": "folders"}
    for rec in records:
        if isinstance(rec, dict) and rec.get("type") in kind_group:
            groups[kind_group[str(rec["type"])]][1].append(rec)
    out: list[CheckResult] = []
    for name, (what, recs) in groups.items():
        bad = [(str(r.get("path")), p) for r in recs if (p := _problem(root, r)) is not None]
        counted = f"{len(recs)} {name if len(recs) != 1 else name[:-1]}"
        if name == "files":
            size = sum(int(r.get("size") or 0) for r in recs if r.get("type") == "file")
            counted += f" ({size} bytes)"
        if not bad:
            out.append(CheckResult(name, True, f"{counted}, {what}", len(recs)))
            continue
        shown = "; ".join(f"/{p}: {why}" for p, why in bad[:MAX_NAMED])
        more = f"; and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        out.append(
            CheckResult(
                name,
                False,
                f"{len(bad)} of {counted} differ from the backup's file list: {shown}{more}",
                len(recs) - len(bad),
            )
        )
    return out
