"""Restore one backup of one source: the one entry for every kind.

``restore(ctx, source, ref, request)`` takes a typed request of one kind
(``PostgresRestoreRequest``, ``FilesRestoreRequest``, ``MeilisearchRestoreRequest``,
``PitrRestoreRequest``, in ``operations/restorers/``), finds the kind's restorer in the
source registry (``SourceEntry.restorer``), finds the backup, and runs the restorer inside
the one guard (``operations.guarded``: identity pre-check, progress, audit record).

A restorer (``restorers/base.py``) says, for its kind: which options of ``posterity restore`` apply to it
(``options``; ``point_options`` for ``restore --point``), how a request is built from them,
how its backup is found (point-in-time picks a base backup for the target), the progress
label, the audit details, and how the restore runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .context import Context
from .guarded import guarded, precheck
from .progress import NoProgress, Progress

if TYPE_CHECKING:
    from .restorers.base import Restorer


class OptionError(ValueError):
    """Options that do not make a request (the CLI shows it as a usage error)."""


def restorer(kind: str) -> Restorer:
    """The registered restorer of ``kind``; a ConfigError when the kind has none."""
    from ..sources.registry import SOURCES, load

    entry = SOURCES.get(kind)
    if entry is None or not entry.restorer:
        raise ConfigError(f"Restore of kind {kind!r} is not supported by this version.")
    found: Restorer = load(entry.restorer)
    return found


def restorers() -> dict[str, Restorer]:
    from ..sources.registry import SOURCES

    return {kind: restorer(kind) for kind, e in SOURCES.items() if e.restorer}


def restore(ctx: Context, source: str, ref: str, request: Any, progress: Progress | None = None) -> Any:
    """Restore backup ``ref`` of ``source`` as ``request`` (of the source's kind) says."""
    kind = request.kind
    r = restorer(kind)
    cfg = ctx.config.sources.get(source)
    if cfg is None and r.configured:
        cfg = ctx.config.source(source)
    if cfg is not None and cfg.kind != kind:
        raise ConfigError(f"Source {source!r} is of kind {cfg.kind!r}, not {kind}.")
    request = r.check(ctx, source, ref, request)
    if not r.guarded(request):  # a read-only check (Meilisearch's --check-counts alone)
        return r.run(ctx, source, r.find(ctx, source, ref, request), [], request, NoProgress())
    identities = ctx.identities(request.identity_file)
    manifest = r.find(ctx, source, ref, request)
    if manifest.kind != kind:
        raise ConfigError(f"Backup {manifest.id} is a {manifest.kind} backup, not a {kind} backup.")
    precheck(identities, manifest)
    return guarded(
        ctx, source, manifest,
        lambda p: r.run(ctx, source, manifest, identities, request, p),
        progress=progress,
        label=r.label(manifest, request),
        details=lambda result: r.details(manifest, request, result),
    )

