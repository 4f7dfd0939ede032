"""The identity pre-check every reader of encrypted objects runs before reading anything.

Judged from the recipients each manifest records, so a wrong key is named as a wrong key
before a restore creates anything, instead of every object being called bad.
"""

from __future__ import annotations

from ..errors import KeyError_
from ..repository import ArtifactRecord


def _identity_recipients(identities: list) -> set[str]:
    out = set()
    for ident in identities:
        try:
            out.add(str(ident.to_public()))
        except Exception:  # an identity kind without a public form: cannot pre-check it
            continue
    return out


def _stage_recipients(art: ArtifactRecord) -> set[str]:
    for spec in art.stages:
        if isinstance(spec, dict) and spec.get("name") == "age":
            return {str(r) for r in spec.get("recipients", [])}
    return set()


def require_identity_for(identities: list, artifacts: list[ArtifactRecord]) -> None:
    """Refuse before reading anything when no artifact is encrypted to any of ``identities``
    (judged from the recipients each manifest records), instead of calling every object bad."""
    mine = _identity_recipients(identities)
    if (
        artifacts
        and mine
        and all(_stage_recipients(a) and not (_stage_recipients(a) & mine) for a in artifacts)
    ):
        raise KeyError_(
            f"None of the {len(artifacts)} objects to read is encrypted to the identity given "
            f"({', '.join(sorted(r[:12] + '…' for r in mine))}); nothing was read.",
            hint="Use the identity file whose public key is among [encryption] recipients "
            "(`posterity key show key.txt` prints it).",
        )
