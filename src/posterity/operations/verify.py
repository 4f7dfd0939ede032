"""Verify backups: are they all there, and do they decode to what they claim to be?

Two depths, like ``restic check``:

- structure (default, cheap): one listing of ``backups/`` and every manifest read from the
  store itself (never from the local cache, so a manifest changed in the store is seen).
  Every object a manifest names must exist with the recorded size, the manifest must agree
  with its own key, and (when checking everything) every restore point must parse and name
  committed backups.
- ``read_data`` (or a random ``subset`` fraction of the objects): each object is downloaded,
  its sha256 and size checked, decrypted, decompressed to the end (zstd frame checksums)
  and fed to the checker of its kind (``content_checks``): ``pg_restore`` reads a pg_dump
  archive to its last block, a tar is listed, a globals script must be complete SQL text.

Every problem becomes a ``Finding`` naming the object; the operation itself only raises
for things that stop it from judging at all (no identity, object store unreachable).
A damaged object is reported, and the other objects are still checked.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict
from typing import IO, Any, cast

from ..errors import (
    BackupNotFound,
    ChecksumMismatch,
    ConfigError,
    DecryptionFailed,
    IntegrityError,
    ManifestInvalid,
    ObjectNotFound,
    TruncatedObject,
)
from ..pipeline import decode_to
from ..pipeline.stages import check_specs
from ..repository import ArtifactRecord, Manifest, Repository, layout
from .content_checks import ContentInvalid, content_check_for
from .context import Context
from .identity import require_identity_for
from .progress import NoProgress, Progress
from .verify_dependents import name_dependents
from .verify_result import Finding, VerifyResult
from .verify_wal import check_wal_chains


def parse_subset(text: str) -> float:
    """``10%`` or ``0.1`` → 0.1; a fraction in (0, 1]."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ConfigError(
            f"--read-data-subset {text!r} is not a share of the objects.",
            hint="Write a percentage such as 10% (between 0% and 100%).",
        )
    return value


def verify(
    ctx: Context,
    ref: str | None = None,
    *,
    latest: bool = False,
    source: str | None = None,
    read_data: bool = False,
    subset: float | None = None,
    identity_file: str | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Check the selected backups (``ref``, the latest of each source, or all of them)."""
    progress = progress or NoProgress()
    t0 = time.monotonic()
    reading = read_data or subset is not None
    mode = "structure"
    if read_data:
        mode = "read-data"
    elif subset is not None:
        mode = f"read-data-subset {subset * 100:g}%"
    result = VerifyResult(mode=mode)
    repo = ctx.repo
    repo.descriptor()
    identities = ctx.identities(identity_file) if reading else []

    inventory = repo.inventory(source)
    listing = inventory.objects
    manifest_keys = inventory.manifest_keys()
    selected = _select(manifest_keys, ref, latest, source)

    manifests: list[Manifest] = []
    for key in selected:
        m = _read_manifest(repo, key, result)
        if m is not None:
            manifests.append(m)
            result.backups.append(f"{m.source}/{m.id}")
            _check_structure(m, listing, result)
    if ref is None and not latest:
        _check_points(repo, listing if not source else None, source, result)
        # Objects no manifest names, outside any committed backup's folder: left by an
        # interrupted (or running) backup. Not an error; prune removes them.
        committed = {layout.parse_backup_key(k)[:2] for k in manifest_keys}  # type: ignore[index]
        named = {a.key for m in manifests for a in m.artifacts}
        result.uncommitted = sorted(
            k
            for k in listing
            if (p := layout.parse_backup_key(k))
            and (p[0], p[1]) not in committed
            and k not in named
        )

    check_wal_chains(ctx, manifests, result)
    if reading:
        _read_objects(ctx, manifests, identities, subset, result, progress)
    name_dependents(ctx, manifests, result, partial=bool(ref or latest or source))
    result.seconds = round(time.monotonic() - t0, 3)
    repo.audit(
        "verify",
        "succeeded" if result.ok else "failed",
        {
            "mode": mode,
            "source": source,
            "backups": len(result.backups),
            "objects": result.objects,
            "objects_read": result.objects_read,
            "bytes_read": result.bytes_read,
            "findings": [asdict(f) for f in result.findings],
        },
    )
    return result


def _select(keys: list[str], ref: str | None, latest: bool, source: str | None) -> list[str]:
    parsed = [(layout.parse_backup_key(k), k) for k in keys]
    if ref is not None:
        matches = [k for p, k in parsed if p and p[1].startswith(ref)]
        if not matches:
            where = f" of source {source!r}" if source else ""
            raise BackupNotFound(f"No backup {ref!r}{where}.")
        if len({layout.parse_backup_key(k)[1] for k in matches}) > 1:  # type: ignore[index]
            raise BackupNotFound(f"{ref!r} matches several backups.", hint="Give more of the id.")
        return matches
    if latest:
        newest: dict[str, tuple[str, str]] = {}
        for p, k in parsed:
            if p and (p[0] not in newest or p[1] > newest[p[0]][0]):
                newest[p[0]] = (p[1], k)
        return sorted(k for _, k in newest.values())
    return keys


def _read_manifest(repo: Repository, key: str, result: VerifyResult) -> Manifest | None:
    src, bid, _ = layout.parse_backup_key(key)  # type: ignore[misc]
    try:
        m = Manifest.from_json(repo.read_stored_bytes(key), key)
    except ObjectNotFound:
        result.findings.append(
            Finding(key, "missing", f"The manifest {key} disappeared during the check.", src, bid)
        )
        return None
    except ManifestInvalid as exc:
        result.findings.append(Finding(key, "manifest", exc.message, src, bid))
        return None
    problems = []
    if m.id != bid or m.source != src:
        problems.append(f"it says backup {m.source}/{m.id} but is stored as {src}/{bid}")
    for a in m.artifacts:
        # An unchanged backup may name the payloads of an earlier one of the same source.
        if not a.key.startswith(layout.backups_prefix(src)):
            problems.append(f"artifact {a.name!r} points outside its source's backups ({a.key})")
        try:
            check_specs(a.stages)
        except IntegrityError as exc:
            problems.append(f"artifact {a.name!r}: {exc.message}")
    if not m.artifacts:
        problems.append("it names no objects")
    if problems:
        result.findings.append(
            Finding(
                key,
                "manifest",
                f"The manifest {key} is inconsistent: {'; '.join(problems)}.",
                src,
                bid,
            )
        )
        return None
    return m


def _missing(a: Any, m: Manifest) -> Finding:
    return Finding(a.key, "missing", f"{a.key} is missing (named by backup {m.source}/{m.id}).", m.source, m.id)


def _check_structure(m: Manifest, listing: dict[str, int], result: VerifyResult) -> None:
    for a in m.artifacts:
        result.objects += 1
        size = listing.get(a.key)
        if size is None:
            result.findings.append(_missing(a, m))
        elif size != a.size:
            result.findings.append(
                Finding(
                    a.key,
                    "size",
                    f"{a.key} has {size} bytes, its manifest says {a.size}.",
                    m.source,
                    m.id,
                )
            )


def _check_points(
    repo: Repository, listing: dict[str, int] | None, source: str | None, result: VerifyResult
) -> None:
    if listing is None:
        listing = repo.inventory().objects
    for key in repo.point_keys():
        result.points += 1
        try:
            point = repo.read_point(key)
        except ObjectNotFound:
            continue
        except ManifestInvalid as exc:
            result.findings.append(Finding(key, "point", exc.message))
            continue
        missing = [
            f"{m.source}/{m.backup}"
            for m in point.backups
            if (source is None or m.source == source) and m.manifest not in listing
        ]
        if not point.backups:
            result.findings.append(
                Finding(key, "point", f"The restore point {key} names no backups.")
            )
        elif missing:
            result.findings.append(
                Finding(
                    key,
                    "point",
                    f"The restore point {key} names backups that do not exist: {', '.join(missing)}.",
                )
            )


def _read_objects(
    ctx: Context,
    manifests: list[Manifest],
    identities: list,
    subset: float | None,
    result: VerifyResult,
    progress: Progress,
) -> None:
    bad = {f.key for f in result.findings}
    todo, seen = [], set()
    for m in manifests:  # an object named by several (unchanged) backups is read once
        for a in m.artifacts:
            if a.key not in bad and (a.key, a.sha256) not in seen:
                seen.add((a.key, a.sha256))
                todo.append((m, a))
    if subset is not None and todo:
        todo = random.sample(todo, max(1, math.ceil(len(todo) * subset)))
        todo.sort(key=lambda t: t[1].key)
    require_identity_for(identities, [a for _, a in todo])
    for m, a in todo:
        progress.start(f"verify {a.key}", a.raw_size)
        try:
            _read_one(ctx, m, a, identities, result, progress)
        finally:
            progress.stop()


_PROBLEM = {
    ContentInvalid: "content",
    ChecksumMismatch: "checksum",
    TruncatedObject: "truncated",
    DecryptionFailed: "decrypt",
}


def _read_one(
    ctx: Context,
    m: Manifest,
    a: ArtifactRecord,
    identities: list,
    result: VerifyResult,
    progress: Progress,
) -> None:
    sink = content_check_for(a, m)
    counted = _Counted(sink, progress)
    try:
        raw = decode_to(
            ctx.repo.read_stored(a.key),
            cast(IO[bytes], counted),
            identities,
            key=a.key,
            expected_sha256=a.sha256,
            expected_size=a.size,
            specs=a.stages,
        )
        facts = sink.finish()
    except ObjectNotFound:
        sink.abort()
        result.findings.append(_missing(a, m))
        return
    except IntegrityError as exc:
        sink.abort()
        problem = next((v for k, v in _PROBLEM.items() if isinstance(exc, k)), "decode")
        result.findings.append(Finding(a.key, problem, exc.message, m.source, m.id))
        return
    except BaseException:
        sink.abort()
        raise
    result.objects_read += 1
    result.bytes_read += a.size
    result.raw_bytes += raw
    if raw != a.raw_size:
        result.findings.append(
            Finding(
                a.key,
                "decode",
                f"{a.key} decodes to {raw} bytes, its manifest says {a.raw_size}.",
                m.source,
                m.id,
            )
        )
    if facts.warning:
        result.warnings.append(f"{a.key}: {facts.warning}")
    result.checked[a.key] = facts


class _Counted:
    """Pass decoded bytes to the checker, advancing progress."""

    def __init__(self, sink, progress: Progress) -> None:
        self.sink = sink
        self.progress = progress

    def write(self, b) -> int:
        self.sink.write(b)
        self.progress.advance(len(b))
        return len(b)

    def flush(self) -> None:
        pass
