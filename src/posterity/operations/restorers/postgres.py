"""Restore a postgres (logical) backup into a database: ``--to-database NAME`` and friends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ConfigError
from ...kinds import POSTGRES
from ...repository import Manifest
from ...repository.point import PointMember
from ..context import Context
from ..progress import Progress
from ..restore import OptionError
from ..restore_results import PostgresRestoreResult
from .base import Restorer


@dataclass(frozen=True)
class PostgresRestoreRequest:
    kind: ClassVar[str] = POSTGRES
    to_database: str
    jobs: int | None = None  # None: the source's jobs, else the cores for a split backup, streaming for one archive
    clean: bool = False
    with_roles: bool = False
    overwrite_roles: bool = False
    no_owner: bool = False
    target_dsn: str | None = None
    staging_dir: Path | None = None
    check_counts: bool = False
    identity_file: str | None = None


_FIELDS = ("jobs", "clean", "with_roles", "overwrite_roles", "no_owner", "target_dsn", "staging_dir", "check_counts")


class PostgresRestorer(Restorer):
    kind = POSTGRES
    options = ("to_database", *_FIELDS)
    point_options = options

    def request(self, source: str, opts: dict[str, Any]) -> PostgresRestoreRequest:
        if not opts.get("to_database"):
            raise OptionError("postgres restores need --to-database NAME.")
        return self._build(opts)

    def point_request(self, point_id: str, members: list[PointMember], opts: dict[str, Any]) -> PostgresRestoreRequest:
        if not opts.get("to_database"):
            raise ConfigError(
                f"Restore point {point_id} holds a PostgreSQL backup ({members[0].source}); give --to-database NAME.",
                hint="The database is created if missing and must be empty unless --clean.",
            )
        if len(members) > 1:
            cmds = "; ".join(f"posterity restore {m.source} {m.backup} --to-database …" for m in members)
            raise ConfigError(
                f"Restore point {point_id} holds {len(members)} PostgreSQL backups; one --to-database cannot "
                "name them all.",
                hint=f"Restore them one by one: {cmds}.",
            )
        return self._build(opts)

    def _build(self, opts: dict[str, Any]) -> PostgresRestoreRequest:
        return PostgresRestoreRequest(
            to_database=opts["to_database"], identity_file=opts.get("identity_file"),
            **{k: opts[k] for k in _FIELDS if opts.get(k) is not None},
        )

    def label(self, manifest: Manifest, req: PostgresRestoreRequest) -> tuple[str, int | None]:
        dump = [a for a in manifest.artifacts if a.kind == "pg_dump-custom"]
        return f"restore {manifest.id}", dump[0].raw_size if dump else None

    def details(self, manifest: Manifest, req: PostgresRestoreRequest, result: Any) -> dict[str, Any]:
        return {} if result is None else {"database": req.to_database}

    def run(self, ctx: Context, source: str, manifest: Manifest, identities: list, req: PostgresRestoreRequest,
            progress: Progress) -> PostgresRestoreResult:
        from ...sources.postgres.restore import PostgresRestore, restore_logical

        cfg = ctx.config.source(source)
        inner = PostgresRestore(
            dsn=req.target_dsn or cfg.dsn.get_secret_value(),
            to_database=req.to_database,
            jobs=req.jobs or cfg.jobs or 0,  # 0: the cores for a split backup, streaming for one archive
            clean=req.clean,
            with_roles=req.with_roles,
            overwrite_roles=req.overwrite_roles,
            no_owner=req.no_owner,
            staging_dir=req.staging_dir or ctx.staging_dir,
            check_counts=req.check_counts,
            bin_dir=cfg.bin_dir,
        )
        return PostgresRestoreResult.from_dict(
            restore_logical(ctx.repo, manifest, identities, inner, progress=progress.advance))


RESTORER = PostgresRestorer()
