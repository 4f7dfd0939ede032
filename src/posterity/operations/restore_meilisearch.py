"""Restore a Meilisearch backup: indexes into the live server (swap), or a snapshot/dump file.

Wires the configuration, the repository and the audit log to
``posterity.sources.meilisearch.restore`` / ``restore_file``; the CLI only parses and renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, PosterityError
from .context import Context


def _setup(ctx: Context, source: str) -> tuple[Any, Any]:
    from ..sources.meilisearch.client import MeiliClient

    cfg = ctx.config.source(source)
    if cfg.kind != "meilisearch":
        raise ConfigError(f"Source {source!r} is of kind {cfg.kind!r}, not meilisearch.")
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    return cfg, MeiliClient(cfg.url, key, task_timeout=cfg.task_timeout)


def _audited(ctx: Context, source: str, manifest: Any, what: dict[str, Any], run) -> dict[str, Any]:
    try:
        result = run()
    except PosterityError as exc:
        ctx.repo.audit("restore", "failed", {"source": source, "backup": manifest.id, **what, "error": str(exc)})
        raise
    ctx.repo.audit("restore", "succeeded", {"source": source, "backup": manifest.id, **what})
    return result


def restore_meilisearch_indexes(
    ctx: Context,
    source: str,
    ref: str,
    *,
    indexes: list[str] | None,
    as_name: str | None = None,
    replace: bool = False,
    prefer: str | None = None,
    identity_file: str | None = None,
) -> dict[str, Any]:
    """Restore ``indexes`` (None: every index of the backup) through temporary indexes and a swap."""
    from ..sources.meilisearch.restore import IndexRestore, restore_indexes

    _, client = _setup(ctx, source)
    with client:
        identities = ctx.identities(identity_file)
        manifest = ctx.repo.find(ref, source)
        req = IndexRestore(indexes=indexes, as_name=as_name, replace=replace, prefer=prefer,
                           staging_dir=ctx.staging_dir)
        what = {"indexes": indexes or "all", "as": as_name, "replace": replace}
        return _audited(ctx, source, manifest, what,
                        lambda: restore_indexes(client, ctx.repo, manifest, identities, req))


def restore_meilisearch_file(
    ctx: Context,
    source: str,
    ref: str,
    *,
    what: str,
    path: Path,
    identity_file: str | None = None,
) -> dict[str, Any]:
    """Write the backup's snapshot or dump to ``path``; run restart_command when configured."""
    from ..sources.meilisearch.restore_file import restore_file

    cfg, client = _setup(ctx, source)
    with client:
        identities = ctx.identities(identity_file)
        manifest = ctx.repo.find(ref, source)
        return _audited(
            ctx, source, manifest, {what + "_to": str(path)},
            lambda: restore_file(client, ctx.repo, manifest, identities, what=what, path=path,
                                 restart_command=cfg.restart_command, api_url=cfg.url),
        )


def check_meilisearch_counts(ctx: Context, source: str, ref: str) -> dict[str, Any]:
    """Compare the live server's document counts with those the backup recorded."""
    from ..sources.meilisearch.restore_file import compare_counts, expected_counts

    _, client = _setup(ctx, source)
    with client:
        manifest = ctx.repo.find(ref, source)
        counts, exact = expected_counts(manifest)
        return {"backup": manifest.id, "counts_exact": exact, **compare_counts(client, counts)}
