"""Create a repository (refuses an existing one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..pipeline import parse_recipient
from .context import Context


@dataclass(frozen=True)
class InitResult:
    """The new repository: where it is and its descriptor (``posterity.json``)."""

    location: str
    id: str
    format: int
    created: str
    created_by: str
    recipients: list[str] = field(default_factory=list)  # fingerprints, not keys
    extra: dict[str, Any] = field(default_factory=dict)  # descriptor fields a later version adds

    @classmethod
    def of(cls, location: str, desc: dict[str, Any]) -> InitResult:
        known = {"id", "format", "created", "created_by", "recipients"}
        return cls(location=location, id=desc["id"], format=desc["format"], created=desc["created"],
                   created_by=desc["created_by"], recipients=list(desc.get("recipients") or []),
                   extra={k: v for k, v in desc.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """``posterity init --json``: the location, then the descriptor as stored."""
        return {"location": self.location, "format": self.format, "id": self.id, "created": self.created,
                "created_by": self.created_by, "recipients": self.recipients, **self.extra}


def init_repository(ctx: Context) -> InitResult:
    recipients = ctx.config.encryption.recipients
    for r in recipients:
        parse_recipient(r)  # a bad key is an error now, not at the first backup
    desc = ctx.repo.init(recipients)
    ctx.repo.audit("init", "succeeded", {"repository": ctx.repo.location})
    return InitResult.of(ctx.repo.location, desc)
