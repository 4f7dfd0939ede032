"""Which backups and restore points a damaged object breaks.

One payload can be named by several manifests: an "unchanged" backup reuses the payload of
the backup before it (``unchanged.py``), and a restore point names one backup per source.
When verify finds an object missing or damaged, it names *every* committed backup whose
manifest lists that object and every restore point holding one of those backups, so the
person at the terminal knows the whole damage, not just the first backup that met it.

When verify checked only part of the repository (one backup, ``--latest``, ``--source``),
the manifests of the sources involved are read too (through the repository's manifest
cache), so the answer is complete all the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ManifestInvalid, ObjectNotFound, PosterityError
from ..repository import Manifest, layout

if TYPE_CHECKING:
    from .context import Context
    from .verify_result import VerifyResult

log = logging.getLogger(__name__)


def name_dependents(ctx: Context, checked: list[Manifest], result: VerifyResult, *, partial: bool) -> None:
    """Fill ``backups_affected``/``points_affected`` of each finding about a payload object."""
    targets = [f for f in result.findings if _is_payload(f.key)]
    if not targets:
        return
    by_key: dict[str, Manifest] = {m.key or layout.manifest_key(m.source, m.id): m for m in checked}
    if partial:
        for source in sorted({layout.parse_backup_key(f.key)[0] for f in targets}):  # type: ignore[index]
            try:
                for m in ctx.repo.manifests(source):
                    by_key.setdefault(m.key or layout.manifest_key(m.source, m.id), m)
            except PosterityError as exc:  # the findings stand; the list may be short
                log.warning("Could not read every manifest of %s to name what the damage breaks: %s", source, exc)
    naming: dict[str, set[str]] = {}
    for m in by_key.values():
        for a in m.artifacts:
            naming.setdefault(a.key, set()).add(f"{m.source}/{m.id}")
    points = _points_by_backup(ctx)
    for f in targets:
        backups = sorted(naming.get(f.key, set()) | ({f"{f.source}/{f.backup}"} if f.backup else set()))
        f.backups_affected = backups
        f.points_affected = sorted({p for b in backups for p in points.get(b, ())})
        f.message += describe(f.backups_affected, f.points_affected)


def _is_payload(key: str) -> bool:
    parsed = layout.parse_backup_key(key)
    return parsed is not None and not key.endswith("/" + layout.MANIFEST)


def _points_by_backup(ctx: Context) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key in ctx.repo.point_keys():
        try:
            point = ctx.repo.read_point(key)
        except (ObjectNotFound, ManifestInvalid):
            continue  # reported by the point check itself
        for member in point.backups:
            out.setdefault(f"{member.source}/{member.backup}", set()).add(point.id)
    return out


def describe(backups: list[str], points: list[str]) -> str:
    """" It breaks backups a, b and restore point p." (empty when nothing is named)."""
    parts = []
    if backups:
        parts.append(f"backup{'s' if len(backups) > 1 else ''} {', '.join(backups)}")
    if points:
        parts.append(f"restore point{'s' if len(points) > 1 else ''} {', '.join(points)}")
    return f" It breaks {' and '.join(parts)}." if parts else ""
