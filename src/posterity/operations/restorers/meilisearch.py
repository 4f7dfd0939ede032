"""Restore a Meilisearch backup: indexes into the live server (temporary index and swap), or
its snapshot/dump to a file; or only compare the live document counts (``--check-counts``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...kinds import MEILISEARCH
from ...repository import Manifest
from ...repository.point import PointMember
from ..context import Context
from ..progress import Progress
from ..restore import OptionError
from ..restore_results import (
    MeilisearchCountsResult,
    MeilisearchFileResult,
    MeilisearchIndexesResult,
)
from .base import Restorer


@dataclass(frozen=True)
class MeilisearchRestoreRequest:
    """One of: ``indexes`` (() with ``all_indexes``: every index), ``snapshot_to``/``dump_to``,
    or ``check_counts`` alone (a read: no restore, no audit record)."""

    kind: ClassVar[str] = MEILISEARCH
    indexes: tuple[str, ...] = ()
    all_indexes: bool = False
    as_name: str | None = None
    as_suffix: str | None = None  # every index as ``<uid><as_suffix>`` (the drill's throwaway copies; no option sets it)
    replace: bool = False
    snapshot_to: Path | None = None
    dump_to: Path | None = None
    check_counts: bool = False
    prefer: str | None = None
    identity_file: str | None = None

    @property
    def file(self) -> tuple[str, Path] | None:
        if self.indexes or self.all_indexes:
            return None
        if self.snapshot_to is not None:
            return "snapshot", self.snapshot_to
        if self.dump_to is not None:
            return "dump", self.dump_to
        return None

    @property
    def counts_only(self) -> bool:
        return not (self.indexes or self.all_indexes) and self.file is None


class MeilisearchRestorer(Restorer):
    kind = MEILISEARCH
    options = ("meili_indexes", "meili_all", "meili_as", "meili_replace", "meili_snapshot_to", "meili_dump_to",
               "check_counts")
    point_options = ("meili_replace",)
    # no label(): tasks on the server, not a byte stream, so no progress bar

    def request(self, source: str, opts: dict[str, Any]) -> MeilisearchRestoreRequest:
        indexes = tuple(opts.get("meili_indexes") or ())
        chosen = [bool(indexes), bool(opts.get("meili_all")), opts.get("meili_snapshot_to") is not None,
                  opts.get("meili_dump_to") is not None]
        if sum(chosen) > 1 or (sum(chosen) == 0 and not opts.get("check_counts")):
            raise OptionError(
                "meilisearch restores need exactly one of --index NAME (repeatable), --all, --snapshot-to PATH, "
                "--dump-to PATH (or --check-counts alone).\n"
                f"  posterity restore {source} latest --index posters --replace\n"
                f"  posterity restore {source} latest --index posters --as posters_restored\n"
                f"  posterity restore {source} latest --snapshot-to /var/tmp/restore/"
            )
        if opts.get("meili_as") and len(indexes) != 1:
            raise OptionError("--as renames one index: give exactly one --index with it.")
        return MeilisearchRestoreRequest(
            indexes=indexes, all_indexes=bool(opts.get("meili_all")), as_name=opts.get("meili_as"),
            replace=bool(opts.get("meili_replace")), snapshot_to=opts.get("meili_snapshot_to"),
            dump_to=opts.get("meili_dump_to"), check_counts=bool(opts.get("check_counts")),
            identity_file=opts.get("identity_file"),
        )

    def point_request(self, point_id: str, members: list[PointMember], opts: dict[str, Any]) -> MeilisearchRestoreRequest:
        return MeilisearchRestoreRequest(all_indexes=True, replace=bool(opts.get("meili_replace")),
                                         identity_file=opts.get("identity_file"))

    def guarded(self, req: MeilisearchRestoreRequest) -> bool:
        return not req.counts_only

    def details(self, manifest: Manifest, req: MeilisearchRestoreRequest, result: Any) -> dict[str, Any]:
        file = req.file
        if file is not None:
            return {file[0] + "_to": str(file[1])}
        return {"indexes": list(req.indexes) or "all", "as": req.as_name, "replace": req.replace}

    def run(self, ctx: Context, source: str, manifest: Manifest, identities: list,
            req: MeilisearchRestoreRequest, progress: Progress) -> Any:
        from ...sources.meilisearch.client import MeiliClient

        cfg = ctx.config.source(source)
        key = cfg.api_key.get_secret_value() if cfg.api_key else None
        with MeiliClient(cfg.url, key, task_timeout=cfg.task_timeout) as client:
            if req.counts_only:
                return _check_counts(client, manifest)
            file = req.file
            if file is not None:
                from ...sources.meilisearch.restore_file import restore_file

                return MeilisearchFileResult.from_dict(
                    restore_file(client, ctx.repo, manifest, identities, what=file[0], path=file[1],
                                 restart_command=cfg.restart_command, api_url=cfg.url))
            from ...sources.meilisearch.restore import IndexRestore, restore_indexes

            inner = IndexRestore(indexes=list(req.indexes) or None, as_name=req.as_name, as_suffix=req.as_suffix,
                                 replace=req.replace, prefer=req.prefer, staging_dir=ctx.staging_dir)
            return MeilisearchIndexesResult.from_dict(restore_indexes(client, ctx.repo, manifest, identities, inner))


def _check_counts(client: Any, manifest: Manifest) -> MeilisearchCountsResult:
    """Compare the live server's document counts with those the backup recorded."""
    from ...sources.meilisearch.restore_file import compare_counts, expected_counts

    counts, exact = expected_counts(manifest)
    return MeilisearchCountsResult.from_dict({"backup": manifest.id, "counts_exact": exact, **compare_counts(client, counts)})


RESTORER = MeilisearchRestorer()
