"""Restore one backup of one source to a target; the target options depend on the kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, PosterityError
from .context import Context
from .progress import NoProgress, Progress


def restore_postgres(
    ctx: Context,
    source: str,
    ref: str,
    *,
    to_database: str,
    jobs: int | None = None,
    clean: bool = False,
    with_roles: bool = False,
    overwrite_roles: bool = False,
    no_owner: bool = False,
    target_dsn: str | None = None,
    staging_dir: Path | None = None,
    check_counts: bool = False,
    identity_file: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    from ..sources.postgres.restore import PostgresRestore, restore_logical

    cfg = ctx.config.source(source)
    if cfg.kind != "postgres":
        raise ConfigError(f"Source {source!r} is of kind {cfg.kind!r}, not postgres.")
    identities = ctx.identities(identity_file)
    manifest = ctx.repo.find(ref, source)
    from .identity import require_identity_for

    require_identity_for(identities, manifest.artifacts)  # a wrong key fails before anything is created
    req = PostgresRestore(
        dsn=target_dsn or cfg.dsn.get_secret_value(),
        to_database=to_database,
        jobs=jobs or cfg.jobs or 0,  # 0: the cores for a split backup, streaming for one archive
        clean=clean,
        with_roles=with_roles,
        overwrite_roles=overwrite_roles,
        no_owner=no_owner,
        staging_dir=staging_dir or ctx.staging_dir,
        check_counts=check_counts,
        bin_dir=cfg.bin_dir,
    )
    progress = progress or NoProgress()
    dump = [a for a in manifest.artifacts if a.kind == "pg_dump-custom"]
    progress.start(f"restore {manifest.id}", dump[0].raw_size if dump else None)
    try:
        result = restore_logical(ctx.repo, manifest, identities, req, progress=progress.advance)
    except PosterityError as exc:
        ctx.repo.audit("restore", "failed", {"source": source, "backup": manifest.id, "error": str(exc)})
        raise
    finally:
        progress.stop()
    ctx.repo.audit("restore", "succeeded", {"source": source, "backup": manifest.id, "database": to_database})
    return result
