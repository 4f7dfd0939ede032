"""WAL archiving use-cases: push (archive_command), fetch (restore_command), stream (status:
``wal_status.py``).

``wal push`` runs once per WAL segment, started by PostgreSQL, so this module and what it
imports stay lean: the configuration, the store, zstd and age; no catalog, no rich.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .. import kinds
from ..errors import ConfigError
from ..kinds import POSTGRES_PHYSICAL as PHYSICAL  # the kind named in messages (pitr.py imports it)
from .context import Context

log = logging.getLogger(__name__)



def physical_source(ctx: Context, source: str | None) -> str:
    """The named source (which must be postgres-physical), or the only such source."""
    if source:
        cfg = ctx.config.source(source)
        if not kinds.of(cfg).wal_archive:
            raise ConfigError(f"Source {source!r} is of kind {cfg.kind!r}, not {PHYSICAL}; WAL belongs to a {PHYSICAL} source.")
        return source
    names = sorted(n for n, c in ctx.config.sources.items() if kinds.of(c).wal_archive)
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError(f"No {PHYSICAL} source is configured.",
                          hint=f'Add [sources.pitr] with kind = "{PHYSICAL}" (see `posterity config example`).')
    raise ConfigError(f"Several {PHYSICAL} sources are configured ({', '.join(names)}); which one is this WAL from?",
                      hint="Pass --source NAME in archive_command/restore_command.")


def _name_error(exc: ValueError) -> ConfigError:
    return ConfigError(str(exc), hint="Pass PostgreSQL's %p (push) or %f %p (fetch) unchanged.")


def wal_push(ctx: Context, path: Path, source: str | None = None):
    """Archive one WAL file (``%p``); returns a PushResult once it is durably stored (None for
    `posterity doctor`'s dry run, see ``repository.probe``)."""
    from ..repository.probe import PROBE_ENV
    from ..repository.walarchive import system_identifier
    from ..repository.walnames import WalNameError

    name = physical_source(ctx, source)
    if os.environ.get(PROBE_ENV):  # `posterity doctor` runs archive_command: check, store nothing
        ctx.repo.require_initialised()
        return None
    try:
        return ctx.repo.wal(name).push(path, ctx.stages, sysid=system_identifier("."))
    except WalNameError as exc:
        raise _name_error(exc) from exc


def wal_fetch(ctx: Context, wal_name: str, dest: Path, source: str | None = None,
              identity_file: str | None = None) -> int:
    """Restore WAL file ``wal_name`` (``%f``) to ``dest`` (``%p``); ``WalNotArchived`` when absent."""
    from ..repository.walnames import WalNameError

    name = physical_source(ctx, source)
    try:
        return ctx.repo.wal(name).fetch(wal_name, dest, ctx.identities(identity_file))
    except WalNameError as exc:
        raise _name_error(exc) from exc


def stream_source(ctx: Context, source: str | None) -> tuple[str, Any]:
    name = physical_source(ctx, source)
    cfg = ctx.config.source(name)
    if cfg.wal != "stream":
        raise ConfigError(f"Source {name!r} archives WAL through archive_command (wal = \"archive\"); nothing to stream.",
                          hint=f'Set wal = "stream" in [sources.{name}] to stream its WAL instead.')
    return name, cfg


def wal_stream(ctx: Context, stop: Any, source: str | None = None, alert: Any = None) -> None:
    """Stream WAL (``wal = "stream"``) until ``stop`` (a threading.Event) is set; ``alert(kind,
    title, body)`` is told when errors last a minute and when they end."""
    from ..sources.postgres.walstream import WalStreamer

    name, cfg = stream_source(ctx, source)
    WalStreamer(ctx.repo.wal(name), cfg, ctx.stages, ctx.state_dir, alert=alert).run(stop)


def wal_drop_slot(ctx: Context, source: str | None = None) -> tuple[str, bool]:
    """Drop the source's replication slot; (slot, whether it existed)."""
    from ..sources.postgres.walstream import WalStreamer, drop_slot

    name, cfg = stream_source(ctx, source)
    slot = cfg.slot_name(name)
    streamer = WalStreamer(ctx.repo.wal(name), cfg, ctx.stages, ctx.state_dir)
    streamer.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    streamer._lock()  # not under a streamer of this host that is waiting to restart pg_receivewal
    try:
        return slot, drop_slot(cfg.dsn.get_secret_value(), slot)
    finally:
        streamer.close()
