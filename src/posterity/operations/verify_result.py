"""What ``posterity verify`` found: one ``Finding`` per problem, gathered in a ``VerifyResult``
(shared by verify's checks, which live in several modules)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .content_checks import ContentFacts


@dataclass
class Finding:
    key: str
    #: missing | size | manifest | checksum | truncated | decrypt | decode | content | point
    problem: str
    message: str
    source: str = ""
    backup: str = ""
    #: every committed backup whose manifest names ``key`` ("source/id"), and every
    #: restore point holding one of them (``verify_dependents``)
    backups_affected: list[str] = field(default_factory=list)
    points_affected: list[str] = field(default_factory=list)


@dataclass
class VerifyResult:
    mode: str
    backups: list[str] = field(default_factory=list)
    points: int = 0
    objects: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: dict[str, ContentFacts] = field(default_factory=dict)  # key -> what its content check found

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # (ContentFacts too, but in its own shape: below)
        d["checked"] = {k: v.to_dict() for k, v in self.checked.items()}
        d["ok"] = self.ok
        return d
