"""Point-in-time restore of a postgres-physical source: choose the base, plan the WAL, restore
(and start) into ``--to-directory``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ConfigError
from ...repository import Manifest
from ..context import Context
from ..progress import Progress
from ..restore import OptionError
from ..restore_results import PitrRestoreResult
from ..wal import PHYSICAL
from .base import Restorer


@dataclass(frozen=True)
class PitrRestoreRequest:
    kind: ClassVar[str] = PHYSICAL
    to_directory: Path
    config_path: Path | None = None  # the posterity.toml restore_command reads (None: the context's)
    target_time: str | None = None
    target_lsn: str | None = None
    target_xid: str | None = None
    target_name: str | None = None
    target_action: str = "pause"
    target_timeline: str | None = None
    start: bool = False
    port: int | None = None
    force: bool = False
    verify: bool = False
    archive_mode: str = "off"
    identity_file: str | None = None

    def target(self) -> Any:
        from ...sources.postgres.pitr_plan import Target
        from ...sources.postgres.pitr_restore import parse_target_time

        return Target(time=parse_target_time(self.target_time), lsn=self.target_lsn, xid=self.target_xid,
                      name=self.target_name, action=self.target_action, timeline=self.target_timeline)


#: `posterity restore` parameter → PitrRestoreRequest field.
_FIELDS = {"pitr_time": "target_time", "pitr_lsn": "target_lsn", "pitr_xid": "target_xid",
           "pitr_name": "target_name", "pitr_action": "target_action", "pitr_timeline": "target_timeline",
           "pitr_start": "start", "pitr_port": "port", "pitr_force": "force", "pitr_verify": "verify",
           "pitr_archive_mode": "archive_mode"}


class PitrRestorer(Restorer):
    kind = PHYSICAL
    options = ("pitr_dir", *_FIELDS)
    # point_order None (kinds.py): a restore point does not restore a physical backup

    def request(self, source: str, opts: dict[str, Any]) -> PitrRestoreRequest:
        if opts.get("pitr_dir") is None:
            raise OptionError("postgres-physical restores need --to-directory DIR.")
        return PitrRestoreRequest(
            to_directory=opts["pitr_dir"], identity_file=opts.get("identity_file"),
            **{field: opts[name] for name, field in _FIELDS.items() if opts.get(name) is not None},
        )

    def find(self, ctx: Context, source: str, ref: str, req: PitrRestoreRequest) -> Manifest:
        """The base backup for the target: ``ref``, or for ``latest`` the newest before the target."""
        from ...sources.postgres.pitr_plan import choose_base

        return choose_base(ctx.repo.manifests(source), ref, req.target(), source, find=ctx.repo.find)

    def label(self, manifest: Manifest, req: PitrRestoreRequest) -> tuple[str, int | None]:
        return f"WAL for {manifest.id}", None

    def details(self, manifest: Manifest, req: PitrRestoreRequest, result: Any) -> dict[str, Any]:
        if result is None:
            return {"kind": PHYSICAL}
        return {"kind": PHYSICAL, "directory": result.directory, "target": result.target}

    def run(self, ctx: Context, source: str, manifest: Manifest, identities: list, req: PitrRestoreRequest,
            progress: Progress) -> PitrRestoreResult:
        from ...sources.postgres.pitr_plan import plan_restore
        from ...sources.postgres.pitr_restore import PitrRequest, restore_pitr

        repo = ctx.repo
        target = req.target()
        own = {int(m.facts.get("timeline") or 1) for m in repo.manifests(source) if m.kind == PHYSICAL}
        plan = plan_restore(repo.wal(source), manifest, target, identities, backup_timelines=own)
        # restore_command gets the identity explicitly, so the one checked (readable by the
        # PostgreSQL user, before anything is written) is the one `wal fetch` will use.
        ident = req.identity_file or ctx.config.encryption.identity_file
        config_path = req.config_path or ctx.config_path
        if config_path is None:
            raise ConfigError("A point-in-time restore needs the path of posterity.toml (restore_command reads it).")
        inner = PitrRequest(
            source=source, to_directory=req.to_directory, target=target, config_path=config_path.resolve(),
            identity_file=Path(ident).resolve() if ident else None, force=req.force, start=req.start,
            port=req.port, verify=req.verify, bin_dir=ctx.config.source(source).bin_dir,
            protected=_protected(ctx, config_path), archive_mode=req.archive_mode,
        )
        return PitrRestoreResult.from_dict(restore_pitr(repo, plan, identities, inner, progress=progress.advance))


def _protected(ctx: Context, config_path: Path) -> list[Path]:
    """Paths a restore target must never contain: the repository folder, state folder, config."""
    paths = [config_path.resolve()]
    url = ctx.config.repository.url
    if url.startswith("file://"):
        paths.append(Path(url[len("file://"):]))
    for p in (ctx.config.general.state_dir, ctx.config.general.staging_dir, ctx.config.encryption.identity_file):
        if p is not None:
            paths.append(Path(p))
    return paths


RESTORER = PitrRestorer()
