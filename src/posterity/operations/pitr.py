"""Point-in-time restore of a postgres-physical source: plan, then restore (and start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, PosterityError
from .context import Context
from .progress import NoProgress, Progress
from .wal import PHYSICAL


def restore_pitr(
    ctx: Context,
    source: str,
    ref: str,
    *,
    to_directory: Path,
    config_path: Path,
    target_time: str | None = None,
    target_lsn: str | None = None,
    target_xid: str | None = None,
    target_name: str | None = None,
    target_action: str = "pause",
    target_timeline: str | None = None,
    start: bool = False,
    port: int | None = None,
    force: bool = False,
    verify: bool = False,
    archive_mode: str = "off",
    identity_file: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    from ..sources.postgres.pitr_plan import Target, choose_base, plan_restore
    from ..sources.postgres.pitr_restore import PitrRequest, parse_target_time
    from ..sources.postgres.pitr_restore import restore_pitr as run

    cfg = ctx.config.source(source)
    if cfg.kind != PHYSICAL:
        raise ConfigError(f"Source {source!r} is of kind {cfg.kind!r}, not {PHYSICAL}.")
    target = Target(time=parse_target_time(target_time), lsn=target_lsn, xid=target_xid, name=target_name,
                    action=target_action, timeline=target_timeline)
    identities = ctx.identities(identity_file)
    repo = ctx.repo
    manifests = repo.manifests(source)
    base = choose_base(manifests, ref, target, source, find=repo.find)
    own = {int(m.facts.get("timeline") or 1) for m in manifests if m.kind == PHYSICAL}
    progress = progress or NoProgress()
    try:
        plan = plan_restore(ctx.repo.wal(source), base, target, identities, backup_timelines=own)
        # restore_command gets the identity explicitly, so the one checked (readable by the
        # PostgreSQL user, before anything is written) is the one `wal fetch` will use.
        ident = identity_file or ctx.config.encryption.identity_file
        req = PitrRequest(
            source=source, to_directory=to_directory, target=target, config_path=config_path.resolve(),
            identity_file=Path(ident).resolve() if ident else None, force=force, start=start,
            port=port, verify=verify, bin_dir=cfg.bin_dir, protected=_protected(ctx, config_path),
            archive_mode=archive_mode,
        )
        progress.start(f"WAL for {base.id}", None)
        try:
            result = run(repo, plan, identities, req, progress=progress.advance)
        finally:
            progress.stop()
    except PosterityError as exc:
        repo.audit("restore", "failed", {"source": source, "backup": base.id, "kind": PHYSICAL, "error": str(exc)})
        raise
    repo.audit("restore", "succeeded", {"source": source, "backup": base.id, "kind": PHYSICAL,
                                        "directory": result["directory"], "target": result["target"]})
    return result


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
