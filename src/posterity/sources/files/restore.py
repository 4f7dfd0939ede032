"""Restore a files backup into a folder: check, stage, verify, then move into place.

1. Before downloading anything, the manifest's file list is compared with the target:
   a file that exists is a conflict unless ``overwrite``; a folder where the backup has a
   file (or a symlink or file on the way to a restored path) is refused always. Conflicts
   are listed and nothing is changed.
2. The payload is verified, decrypted and decompressed in a thread into a pipe, and the tar
   is extracted member by member (``tarsafe``) into a staging folder *inside* the target
   (same filesystem, so the final moves are renames; it never leaves the target folder).
3. Only when the whole stream has been read and its sha256 matches the manifest are the
   selected paths moved into place (renames; a link-then-unlink when not overwriting, so
   a file that appeared meanwhile is not clobbered). A failure before this step leaves the
   target as it was; the staging folder is always removed.
4. Folder modes and mtimes are applied last, deepest first (owners when running as root).

Existing folders are merged into, not conflicts; their mode and mtime are changed only
with ``overwrite``. Across a mount point inside the target (EXDEV) entries are copied
instead of renamed, and hard links between them become separate files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from ...errors import ConfigError, PosterityError, RestoreFailed, RestoreTargetError
from ...repository import ArtifactRecord, Manifest, Repository
from . import tarsafe
from .source import TAR_KIND

MAX_LISTED = 8


@dataclass
class FilesRestore:
    to: Path
    paths: list[str] = field(default_factory=list)
    overwrite: bool = False


def tar_artifact(manifest: Manifest) -> ArtifactRecord:
    found = manifest.artifacts_of_kind(TAR_KIND)
    if not found:
        raise RestoreFailed(
            f"Backup {manifest.id} holds no tar (kinds: {', '.join(a.kind for a in manifest.artifacts)})."
        )
    return found[0]


def selections(paths: list[str]) -> list[str]:
    sel = [tarsafe.normalize_selection(p) for p in paths]
    return [""] if not sel or "" in sel else sorted(set(sel))


def _selected(name: str, sel: list[str]) -> bool:
    return any(tarsafe.under(name, s) for s in sel)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def check_target(target: Path, manifest: Manifest, sel: list[str], overwrite: bool) -> int:
    """Refuse before anything is written; returns how many selected entries the backup has."""
    records = manifest.facts.get("files")
    if not isinstance(records, list):
        return -1  # no list to check against: the move step still refuses conflicts
    chosen = [r for r in records if isinstance(r, dict) and _selected(str(r.get("path", "")), sel)]
    for s in sel:
        if s and not any(tarsafe.under(str(r["path"]), s) for r in chosen):
            tops = sorted({str(r["path"]).split("/")[0] for r in records})
            raise ConfigError(
                f"Backup {manifest.id} has no file at or under {s!r}.",
                hint=f"Paths are stored without the leading / (top level: {', '.join(tops) or 'nothing'}); "
                f"`posterity show {manifest.id}` lists the backup.",
            )
    conflicts: list[str] = []
    blockers: list[str] = []
    names = {str(r["path"]) for r in chosen}
    ancestors: set[str] = set()
    for r in chosen:
        name = str(r["path"])
        parts = name.split("/")
        for i in range(1, len(parts)):
            ancestors.add("/".join(parts[:i]))
        st = _lstat(f"{target}/{name}")
        if st is None:
            continue
        if r.get("type") == "dir":
            if stat.S_ISDIR(st.st_mode):
                continue
            if not overwrite:
                conflicts.append(name)
        elif stat.S_ISDIR(st.st_mode):
            blockers.append(f"{name} (a folder here, a file in the backup)")
        elif not overwrite:
            conflicts.append(name)
    for a in sorted(ancestors - names):
        st = _lstat(f"{target}/{a}")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
            blockers.append(f"{a} ({what} here; restored files would go through it)")
    if blockers:
        raise RestoreTargetError(
            f"{len(blockers)} path(s) in {target} cannot be replaced: {_listing(blockers)}; nothing was changed.",
            hint="Move them away (the restore never deletes folders or writes through symlinks), or restore elsewhere with --to.",
        )
    if conflicts:
        raise RestoreTargetError(
            f"{len(conflicts)} file(s) already exist in {target}: {_listing(conflicts)}; nothing was changed.",
            hint="Restore into an empty folder with --to, or add --overwrite to replace them.",
        )
    return len(chosen)


class _Tap:
    def __init__(self, fh: IO[bytes], progress) -> None:
        self.fh = fh
        self.progress = progress

    def write(self, b) -> int:
        n = self.fh.write(b)
        if self.progress:
            self.progress(len(b))
        return n if n is not None else len(b)

    def flush(self) -> None:
        self.fh.flush()


def _extract(
    repo: Repository, art: ArtifactRecord, identities: list, staging: Path, progress
) -> tarsafe.Extracted:
    """Decode in a thread into a pipe; extract here. Returns only once the sha256 matched."""
    rfd, wfd = os.pipe()
    rfile = os.fdopen(rfd, "rb")
    wfile = os.fdopen(wfd, "wb")
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            repo.read_artifact(art, cast(IO[bytes], _Tap(wfile, progress)), identities)
        except BaseException as exc:
            errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                wfile.close()

    thread = threading.Thread(target=produce, name="posterity-untar", daemon=True)
    thread.start()
    try:
        extracted = tarsafe.Extractor(staging).extract(rfile)
        while rfile.read(
            tarsafe.COPY
        ):  # the end-of-archive padding: let the decoder finish and verify
            pass
    except (tarfile.TarError, EOFError) as exc:
        rfile.close()
        thread.join()
        real = [e for e in errors if not isinstance(e, BrokenPipeError)]
        if real:
            raise real[0] from exc
        raise RestoreFailed(f"The tar in {art.key} is unreadable: {exc}.") from exc
    except BaseException:
        rfile.close()
        thread.join()
        raise
    rfile.close()
    thread.join()
    if errors:
        raise errors[0]
    return extracted


@dataclass
class _Mover:
    staging: Path
    target: Path
    overwrite: bool
    moved: set[str] = field(default_factory=set)  # folders moved or created whole (meta applies)
    merged: set[str] = field(default_factory=set)  # folders that already existed
    overwritten: int = 0

    def parents(self, rel: str) -> None:
        cur = str(self.target)
        for p in rel.split("/")[:-1]:
            cur = f"{cur}/{p}"
            st = _lstat(cur)
            if st is None:
                os.mkdir(cur, 0o755)
            elif not stat.S_ISDIR(st.st_mode):
                raise RestoreTargetError(
                    f"{cur} is not a folder (or is a symlink), so {rel} cannot be restored under it.",
                    hint="Move it away, or restore elsewhere with --to.",
                )

    def node(self, rel: str) -> None:
        src, dst = f"{self.staging}/{rel}", f"{self.target}/{rel}"
        self.parents(rel)
        st_src = os.lstat(src)
        st_dst = _lstat(dst)
        if stat.S_ISDIR(st_src.st_mode):
            if st_dst is not None and stat.S_ISDIR(st_dst.st_mode):
                self.merged.add(rel)
                for child in sorted(os.listdir(src)):
                    self.node(f"{rel}/{child}")
                return
            if st_dst is not None:
                if not self.overwrite:
                    raise RestoreTargetError(
                        f"{dst} exists (and is not a folder); stopped before replacing it.",
                        hint="Add --overwrite, or restore elsewhere with --to.",
                    )
                os.unlink(dst)
                self.overwritten += 1
            self.moved.add(rel)
            try:
                os.rename(src, dst)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                os.mkdir(dst, 0o700)
                for child in sorted(os.listdir(src)):
                    self.node(f"{rel}/{child}")
            return
        if st_dst is not None:
            if stat.S_ISDIR(st_dst.st_mode):
                raise RestoreTargetError(
                    f"{dst} is a folder, the backup has a file there; stopped.",
                    hint="Move the folder away, or restore elsewhere with --to.",
                )
            if not self.overwrite:
                raise RestoreTargetError(
                    f"{dst} appeared during the restore; stopped before replacing it.",
                    hint="Add --overwrite, or restore elsewhere with --to.",
                )
            self.overwritten += 1
        self._place(src, dst, replace=st_dst is not None)

    def _place(self, src: str, dst: str, *, replace: bool) -> None:
        try:
            if replace:
                os.replace(src, dst)
            else:
                os.link(src, dst, follow_symlinks=False)  # fails if dst appeared: never clobbers
                os.unlink(src)
            return
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise RestoreTargetError(
                    f"{dst} appeared during the restore; stopped before replacing it."
                ) from exc
            if exc.errno not in (errno.EXDEV, errno.EPERM):
                raise
        tmp = f"{os.path.dirname(dst)}/.posterity-tmp-{secrets.token_hex(4)}"
        st = os.lstat(src)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), tmp)
        else:
            shutil.copy2(src, tmp, follow_symlinks=False)
        if os.geteuid() == 0:
            os.lchown(tmp, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        if replace:
            os.replace(tmp, dst)
        else:
            try:
                os.link(tmp, dst, follow_symlinks=False)
            finally:
                os.unlink(tmp)

    def wants_meta(self, rel: str) -> bool:
        parts = rel.split("/")
        if any("/".join(parts[:i]) in self.moved for i in range(1, len(parts) + 1)):
            return True
        return self.overwrite and rel in self.merged


def restore_tar(
    repo: Repository, manifest: Manifest, identities: list, req: FilesRestore, progress=None
) -> dict[str, Any]:
    started = time.monotonic()
    art = tar_artifact(manifest)
    sel = selections(req.paths)
    target = Path(os.path.abspath(req.to))
    st = _lstat(str(target))
    if st is not None and not os.path.isdir(target):
        raise RestoreTargetError(
            f"{target} exists and is not a folder.", hint="Give a folder with --to."
        )
    created_target = st is None
    target.mkdir(parents=True, exist_ok=True)
    target = Path(os.path.realpath(target))
    try:
        check_target(target, manifest, sel, req.overwrite)
        staging = Path(tempfile.mkdtemp(prefix=".posterity-restore-", dir=target))
    except BaseException:
        if created_target:
            _remove_if_empty(target)
        raise
    as_root = os.geteuid() == 0
    mover = _Mover(staging, target, req.overwrite)
    ok = False
    try:
        extracted = _extract(repo, art, identities, staging, progress)
        for s in sel:
            if s == "":
                for name in sorted(os.listdir(staging)):
                    mover.node(name)
            elif _lstat(f"{staging}/{s}") is None:
                raise ConfigError(f"Backup {manifest.id} has no file at or under {s!r}.")
            else:
                mover.node(s)
        for rel in sorted(extracted.dir_meta, key=lambda r: r.count("/"), reverse=True):
            if _selected(rel, sel) and mover.wants_meta(rel):
                tarsafe.apply_dir_meta(f"{target}/{rel}", extracted.dir_meta[rel], as_root)
        ok = True
    except (PosterityError, KeyboardInterrupt):
        raise
    except OSError as exc:
        raise RestoreFailed(f"Restoring backup {manifest.id} into {target} failed: {exc}.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_target and not ok:
            _remove_if_empty(target)
    names = [n for n in extracted.names if _selected(n, sel)]
    records = {
        str(r.get("path")): r for r in manifest.facts.get("files") or [] if isinstance(r, dict)
    }
    counts = {"file": 0, "dir": 0, "symlink": 0, "hardlink": 0, "bytes": 0}
    for n in names:
        rec = records.get(n, {})
        if rec.get("type") in counts:
            counts[rec["type"]] += 1
        if rec.get("type") == "file":
            counts["bytes"] += int(rec.get("size") or 0)
    if not records:
        counts.update(
            file=extracted.files,
            dir=extracted.dirs,
            symlink=extracted.symlinks,
            hardlink=extracted.hardlinks,
            bytes=extracted.bytes,
        )
    return {
        "backup": manifest.id,
        "source": manifest.source,
        "unchanged_from": manifest.facts.get("unchanged_from"),
        "target": str(target),
        "paths": [s for s in sel if s],
        "restored": len(names),
        "files": counts["file"] + counts["hardlink"],
        "dirs": counts["dir"],
        "symlinks": counts["symlink"],
        "bytes": counts["bytes"],
        "overwritten": mover.overwritten,
        "owners": as_root,
        "seconds": round(time.monotonic() - started, 3),
    }


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
