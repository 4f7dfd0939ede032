"""The one guard around every restore and drill: identity pre-check, progress, audit.

``precheck`` refuses a wrong key before anything is read or created (for every kind of
restore and drill). ``guarded`` runs a restore between ``progress.start``/``stop`` and
writes the audit record ``restore`` failed/succeeded with the details the kind names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import PosterityError, reworded
from ..repository import Manifest
from .context import Context
from .progress import NoProgress, Progress

T = TypeVar("T")


def precheck(identities: list, manifest: Manifest) -> None:
    """A wrong key fails here, named as a wrong key, before anything is created."""
    from .identity import require_identity_for

    require_identity_for(identities, manifest.artifacts)


def guarded(
    ctx: Context,
    source: str,
    manifest: Manifest,
    run: Callable[[Progress], T],
    *,
    progress: Progress | None,
    label: tuple[str, int | None] | None,
    details: Callable[[T | None], dict[str, Any]],
) -> T:
    """Run ``run(progress)`` with ``progress`` started at ``label`` (None: no progress shown)
    and the audit record around it.

    ``details(None)`` gives the failure record's extra fields, ``details(result)`` the
    success record's; ``source`` and ``backup`` come first, ``error`` last.
    """
    progress = progress if progress is not None and label is not None else NoProgress()
    head = {"source": source, "backup": manifest.id}
    progress.start(*(label or ("", None)))
    try:
        result = run(progress)
    except PosterityError as exc:
        ctx.repo.audit("restore", "failed", {**head, **details(None), "error": str(exc)})
        raise
    finally:
        progress.stop()
    ctx.repo.audit("restore", "succeeded", {**head, **details(result)})
    return result


__all__ = ["guarded", "precheck", "reworded"]  # reworded lives in errors.py (sources use it too)
