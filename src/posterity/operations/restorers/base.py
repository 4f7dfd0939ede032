"""What every restorer inherits: the defaults a kind overrides only where it differs."""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from ...kinds import traits
from ...repository import Manifest
from ...repository.point import PointMember
from ..context import Context
from ..progress import Progress


class Restorer:
    """One kind's restore (see ``operations.restore``). Subclasses set ``kind`` and
    ``options`` and implement ``request``, ``details`` and ``run``."""

    kind: str = ""
    options: tuple[str, ...] = ()  # `posterity restore` parameter names that apply to this kind
    point_options: tuple[str, ...] = ()  # … and those `restore --point` passes on to it
    configured: bool = True  # the source must be configured (a files backup restores without)

    @property
    def point_order(self) -> int | None:
        """Place in a restore point's order (the kind's trait, kinds.py); None: a point cannot hold it."""
        return traits(self.kind).point_order

    def request(self, source: str, opts: dict[str, Any]) -> Any:
        """The typed request from the command's options (``OptionError`` when they do not make one)."""
        raise NotImplementedError

    def point_request(self, point_id: str, members: list[PointMember], opts: dict[str, Any]) -> Any:
        """The request for every member of this kind in a restore point."""
        raise ConfigError(f"Restore point {point_id} holds a {self.kind} backup, which a point cannot restore.")

    def check(self, ctx: Context, source: str, ref: str, req: Any) -> Any:
        """The request completed from the configuration (before any key or backup is read)."""
        return req

    def point_check(self, ctx: Context, source: str, ref: str, req: Any) -> None:
        """What a restore point checks for this member before anything is restored."""

    def find(self, ctx: Context, source: str, ref: str, req: Any) -> Manifest:
        return ctx.repo.find(ref, source)

    def guarded(self, req: Any) -> bool:
        """False for a read-only request: no identity, no audit record."""
        return True

    def label(self, manifest: Manifest, req: Any) -> tuple[str, int | None] | None:
        """The progress label and total bytes; None: no progress shown."""
        return None

    def details(self, manifest: Manifest, req: Any, result: Any) -> dict[str, Any]:
        """The audit record's fields (``result`` None: the failure record's)."""
        return {}

    def run(self, ctx: Context, source: str, manifest: Manifest, identities: list, req: Any,
            progress: Progress) -> Any:
        raise NotImplementedError
