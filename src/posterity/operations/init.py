"""Create a repository (refuses an existing one)."""

from __future__ import annotations

from typing import Any

from ..pipeline import parse_recipient
from .context import Context


def init_repository(ctx: Context) -> dict[str, Any]:
    recipients = ctx.config.encryption.recipients
    for r in recipients:
        parse_recipient(r)  # a bad key is an error now, not at the first backup
    desc = ctx.repo.init(recipients)
    ctx.repo.audit("init", "succeeded", {"repository": ctx.repo.location})
    return {"location": ctx.repo.location, **desc}
