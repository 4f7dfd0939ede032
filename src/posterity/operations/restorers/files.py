"""Restore a files backup into a folder: ``--to DIR`` (else ``restore_to``), ``--path``, ``--overwrite``."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ConfigError
from ...kinds import FILES
from ...repository import Manifest
from ...repository.point import PointMember
from ..context import Context
from ..progress import Progress
from ..restore_results import FilesRestoreResult
from .base import Restorer


@dataclass(frozen=True)
class FilesRestoreRequest:
    kind: ClassVar[str] = FILES
    to: Path | None = None  # None: the source's restore_to
    paths: tuple[str, ...] = ()
    overwrite: bool = False
    identity_file: str | None = None


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


class FilesRestorer(Restorer):
    kind = FILES
    options = ("to", "paths", "overwrite")
    point_options = ("to", "overwrite")
    configured = False  # a files backup restores without its source configured

    def request(self, source: str, opts: dict[str, Any]) -> FilesRestoreRequest:
        to = opts.get("to")
        return FilesRestoreRequest(to=Path(to) if to else None, paths=tuple(opts.get("paths") or ()),
                                   overwrite=bool(opts.get("overwrite")), identity_file=opts.get("identity_file"))

    def point_request(self, point_id: str, members: list[PointMember], opts: dict[str, Any]) -> FilesRestoreRequest:
        return self.request("", {k: opts.get(k) for k in (*self.point_options, "identity_file")})

    def check(self, ctx: Context, source: str, ref: str, req: FilesRestoreRequest) -> FilesRestoreRequest:
        return replace(req, to=files_target(ctx, source, req.to))

    def point_check(self, ctx: Context, source: str, ref: str, req: FilesRestoreRequest) -> None:
        """The conflict check of a files restore alone (nothing downloaded, nothing written)."""
        from ...sources.files.restore import check_target

        target = files_target(ctx, source, req.to)
        manifest = ctx.repo.find(ref, source)
        if os.path.isdir(target):
            check_target(Path(os.path.realpath(target)), manifest, [""], req.overwrite)

    def label(self, manifest: Manifest, req: FilesRestoreRequest) -> tuple[str, int | None]:
        from ...sources.files.restore import tar_artifact

        return f"restore {manifest.id}", tar_artifact(manifest).raw_size

    def details(self, manifest: Manifest, req: FilesRestoreRequest, result: Any) -> dict[str, Any]:
        return {} if result is None else {"target": result.target}

    def run(self, ctx: Context, source: str, manifest: Manifest, identities: list, req: FilesRestoreRequest,
            progress: Progress) -> FilesRestoreResult:
        from ...sources.files.restore import FilesRestore, restore_tar

        assert req.to is not None  # check() filled it in
        inner = FilesRestore(to=req.to, paths=list(req.paths), overwrite=req.overwrite)
        return FilesRestoreResult.from_dict(
            restore_tar(ctx.repo, manifest, identities, inner, progress=progress.advance))


RESTORER = FilesRestorer()
