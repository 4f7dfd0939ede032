"""Restore one files backup into a folder (``posterity restore SOURCE REF --to DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, PosterityError
from .context import Context
from .progress import NoProgress, Progress


def files_target(ctx: Context, source: str, to: str | Path | None) -> Path:
    """``--to``, else the source's configured ``restore_to``."""
    if to:
        return Path(to)
    cfg = ctx.config.sources.get(source)
    configured = getattr(cfg, "restore_to", None)
    if configured:
        return Path(configured)
    raise ConfigError(
        f"No folder to restore {source!r} into.",
        hint=f"Give --to DIR, or set restore_to in [sources.{source}].",
    )


def restore_files(
    ctx: Context,
    source: str,
    ref: str,
    *,
    to: str | Path | None = None,
    paths: list[str] | None = None,
    overwrite: bool = False,
    identity_file: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    from ..sources.files.restore import FilesRestore, restore_tar, tar_artifact

    cfg = ctx.config.sources.get(source)
    if cfg is not None and cfg.kind != "files":
        raise ConfigError(f"Source {source!r} is of kind {cfg.kind!r}, not files.")
    target = files_target(ctx, source, to)
    manifest = ctx.repo.find(ref, source)
    if manifest.kind != "files":
        raise ConfigError(f"Backup {manifest.id} is a {manifest.kind} backup, not a files backup.")
    identities = ctx.identities(identity_file)
    progress = progress or NoProgress()
    progress.start(f"restore {manifest.id}", tar_artifact(manifest).raw_size)
    try:
        result = restore_tar(
            ctx.repo,
            manifest,
            identities,
            FilesRestore(to=target, paths=list(paths or []), overwrite=overwrite),
            progress=progress.advance,
        )
    except PosterityError as exc:
        ctx.repo.audit(
            "restore", "failed", {"source": source, "backup": manifest.id, "error": str(exc)}
        )
        raise
    finally:
        progress.stop()
    ctx.repo.audit(
        "restore",
        "succeeded",
        {"source": source, "backup": manifest.id, "target": result["target"]},
    )
    return result


def check_files_target(
    ctx: Context, source: str, ref: str, to: str | Path | None, overwrite: bool
) -> None:
    """The conflict check of a files restore alone (nothing downloaded, nothing written)."""
    import os

    from ..sources.files.restore import check_target

    target = files_target(ctx, source, to)
    manifest = ctx.repo.find(ref, source)
    if os.path.isdir(target):
        check_target(Path(os.path.realpath(target)), manifest, [""], overwrite)
