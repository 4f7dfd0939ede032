"""Record a backup whose content equals the previous one without storing it again.

A source that can tell cheaply what it would store offers ``content_digest()`` (the files
source walks and hashes its paths without writing a tar). When that digest equals the
``content_digest`` fact of the source's latest manifest, the new manifest:

- is a complete, ordinary manifest (its own id, times, facts, consistency marker), with
  ``facts["unchanged_from"] = <previous backup id>``;
- lists the *previous* payload objects as its artifacts (same keys, sizes, sha256s), so
  restore, verify and show work unchanged, and no new payload is written.

Consequence for retention: a payload can be referenced by manifests other than the one
under whose prefix it lives. Prune must keep every key listed in the artifacts of every
kept manifest (``{a.key for m in kept for a in m.artifacts}``), never infer payloads from
a manifest's own prefix.

The previous payloads are reused only when they are proven intact and were written with
the stage specs (compression, recipients) this run would use; after a key rotation the next
backup is stored anew, encrypted to the new recipients. "Intact" means read back now: every
stored byte is downloaded and its sha256 and size compared with the manifest (no identity
is needed, so a backup host can do it). Existence alone is not enough: a payload damaged
in the store (one flipped byte) was reused by every later backup until a file changed,
each of them unrestorable (issue 11.1). The cost is one download of the previous payload
per unchanged backup, which for configuration files is small; a damaged or unreadable
payload is stored again, never reused.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import socket
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from .. import __version__
from ..errors import ObjectNotFound, PosterityError
from ..repository import Manifest, Repository
from .context import Context

log = logging.getLogger(__name__)


@runtime_checkable
class Digestible(Protocol):
    """A source that can say what it would store without storing it."""

    kind: str

    def content_digest(self) -> str: ...

    def facts(self) -> dict[str, Any]: ...

    def by_hand(self, manifest: Any) -> list[str]: ...


def payload_problem(repo: Repository, artifact: Any) -> str | None:
    """Read ``artifact``'s stored bytes back: None when their size and sha256 match the
    manifest, else what is wrong with them."""
    h = hashlib.sha256()
    n = 0
    try:
        for chunk in repo.read_stored(artifact.key):
            h.update(chunk)
            n += len(chunk)
    except ObjectNotFound:
        return "is missing"
    except PosterityError as exc:
        return f"could not be read back ({exc.message})"
    if n != artifact.size:
        return f"has {n} bytes, its manifest says {artifact.size}"
    if h.hexdigest() != artifact.sha256:
        return "does not match its manifest (sha256 differs: damaged in the store)"
    return None


def latest_manifest(repo: Repository, source: str) -> Manifest | None:
    """The newest committed backup of ``source``, by start time (ids have second resolution)."""
    found = repo.manifests(source)
    return max(found, key=lambda m: (m.started, m.id)) if found else None


def commit_if_unchanged(
    ctx: Context, source: Any, name: str, backup_id: str, started: datetime, tags: list[str] | None
) -> Manifest | None:
    """Commit a manifest that reuses the previous payloads if nothing changed; else None."""
    if not isinstance(source, Digestible):
        return None
    repo = ctx.repo
    previous = latest_manifest(repo, name)
    if previous is None or not previous.facts.get("content_digest") or previous.kind != source.kind:
        return None
    digest = source.content_digest()
    if digest != previous.facts.get("content_digest"):
        return None
    specs = ctx.stages.specs()
    if any(a.stages != specs for a in previous.artifacts):
        log.info("%s: content unchanged, but the stage settings changed; storing it again.", name)
        return None
    for a in previous.artifacts:
        problem = payload_problem(repo, a)
        if problem is not None:
            log.warning(
                "%s: the previous payload %s %s; storing the content again "
                "(`posterity verify` names every backup that reuses it).",
                name,
                a.key,
                problem,
            )
            return None
    facts = source.facts()
    facts["unchanged_from"] = previous.id
    manifest = Manifest(
        id=backup_id,
        source=name,
        kind=previous.kind,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        posterity_version=__version__,
        host=socket.gethostname(),
        artifacts=[copy.deepcopy(a) for a in previous.artifacts],
        facts=facts,
        tags=list(tags or []),
    )
    manifest.restore_by_hand = source.by_hand(manifest)
    repo.commit(manifest)
    return manifest
