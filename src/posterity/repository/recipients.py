"""The recipients a repository expects, versioned and write-once.

``posterity.json`` records the fingerprints of the recipients the repository was created
with (version 1). Each deliberate change (``posterity key recipients add/remove/rotate``)
writes the next version as a new key, ``keys/recipients-<NNNNNN>.json`` (create-if-absent,
so two concurrent changes cannot both claim one version), naming the previous version, the
fingerprints added and removed, who, where, when and why; nothing is rewritten, the old
versions stay readable, and every change is also an audit record.

A backup compares the fingerprints of its configured recipients with the newest version and
is refused on any difference (``RecipientsChanged``, exit 7): a typo or a tampered config
would otherwise make every new backup unreadable to the real identity, silently.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError, ObjectExists, RecipientsChanged
from . import layout
from .repository import _user, fingerprint


@dataclass
class RecipientsVersion:
    version: int
    fingerprints: list[str]
    key: str
    created: str = ""
    host: str = ""
    user: str = ""
    reason: str = ""
    previous: int | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: recipient (public key) text per fingerprint, when the change named it (public data)
    recipients: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def history(repo: Any) -> list[RecipientsVersion]:
    """Every recorded version, oldest first (version 1 is the descriptor's)."""
    desc = repo.descriptor()
    out = [
        RecipientsVersion(
            1,
            list(desc.get("recipients") or []),
            layout.DESCRIPTOR,
            created=str(desc.get("created", "")),
            reason="repository created",
        )
    ]
    found = []
    for info in repo.store.list(layout.RECIPIENTS_PREFIX):
        version = layout.parse_recipients_key(info.key)
        if version is not None and version > 1:
            found.append((version, info.key))
    for version, key in sorted(found):
        raw = json.loads(repo.store.get_bytes(key))
        out.append(
            RecipientsVersion(
                version=version,
                fingerprints=[str(f) for f in raw.get("fingerprints") or []],
                key=key,
                created=str(raw.get("created", "")),
                host=str(raw.get("host", "")),
                user=str(raw.get("user", "")),
                reason=str(raw.get("reason", "")),
                previous=raw.get("previous"),
                added=list(raw.get("added") or []),
                removed=list(raw.get("removed") or []),
                recipients=dict(raw.get("recipients") or {}),
            )
        )
    return out


def current(repo: Any) -> RecipientsVersion:
    return history(repo)[-1]


def require_known(repo: Any, recipients: tuple[str, ...] | list[str]) -> None:
    """Refuse recipients that differ from the repository's newest recorded version."""
    now = current(repo)
    configured = {fingerprint(r): r for r in recipients}
    extra = sorted(set(configured) - set(now.fingerprints))
    missing = sorted(set(now.fingerprints) - set(configured))
    if not extra and not missing:
        return
    parts = []
    if extra:
        parts.append("configured but not recorded: " + ", ".join(f"{f} ({configured[f][:16]}…)" for f in extra))
    if missing:
        parts.append("recorded but not configured: " + ", ".join(missing))
    raise RecipientsChanged(
        f"The recipients in [encryption] differ from the ones this repository records (version {now.version}): "
        f"{'; '.join(parts)}. Nothing was backed up: a backup now could be unreadable to the identities the "
        "repository expects."
    )


def record(repo: Any, fingerprints: list[str], *, reason: str, names: dict[str, str], op: str) -> RecipientsVersion:
    """Write the next version (write-once) and an audit record; returns it."""
    if not fingerprints:
        raise ConfigError(
            "A repository needs at least one recipient; this change would leave none.",
            hint="Add the new recipient first (`posterity key recipients add age1…`), then remove the old one.",
        )
    before = current(repo)
    if sorted(fingerprints) == sorted(before.fingerprints):
        raise ConfigError(
            f"The recipients are already those of version {before.version}; nothing to record.",
            hint="`posterity key recipients list` shows them.",
        )
    version = RecipientsVersion(
        version=before.version + 1,
        fingerprints=sorted(fingerprints),
        key=layout.recipients_key(before.version + 1),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        host=socket.gethostname(),
        user=_user(),
        reason=reason,
        previous=before.version,
        added=sorted(set(fingerprints) - set(before.fingerprints)),
        removed=sorted(set(before.fingerprints) - set(fingerprints)),
        recipients={f: r for f, r in names.items() if f in fingerprints},
    )
    body = {k: v for k, v in version.to_dict().items() if k not in ("key", "version")}
    body["version"] = version.version
    try:
        repo.store.put(version.key, json.dumps(body, indent=2).encode() + b"\n", if_absent=True)
    except ObjectExists:
        raise ConfigError(
            f"Another change recorded recipients version {version.version} at the same time; nothing was written.",
            hint="Run `posterity key recipients list` and repeat the change if it is still needed.",
        ) from None
    repo.audit(
        op,
        "succeeded",
        {"version": version.version, "previous": before.version, "added": version.added,
         "removed": version.removed, "reason": reason},
    )
    return version
