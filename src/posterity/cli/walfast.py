"""The lean entry point for PostgreSQL's archive_command and restore_command.

    archive_command = '/opt/posterity/bin/python -m posterity.cli.walfast push -c /etc/posterity/posterity.toml --source pitr %p'
    restore_command = '/opt/posterity/bin/python -m posterity.cli.walfast fetch -c /etc/posterity/posterity.toml --source pitr %f %p'

PostgreSQL starts one process per WAL segment, so start-up time is archiving throughput.
``posterity wal push`` pays for the whole CLI (click, rich, every command) and the full
pydantic configuration schema: ~0.5 s per segment measured here, of which the push itself
is ~0.03 s. This entry imports only tomllib, the store, zstd and age (~0.1 s): it reads the
few settings a push or fetch needs ([repository], [encryption], the source's kind) straight
from the TOML, with the same ``${VAR}`` interpolation, and falls back to the full loader —
and its error messages — whenever anything there is not plainly valid.

Same behaviour and exit codes as ``posterity wal push|fetch``: push exits 0 only once the
file is durably stored; fetch exits 0 (restored), 1 (not archived) or 126 (archived but not
restorable: PostgreSQL stops recovery rather than end it early).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..kinds import traits

PROBE_ENV = "POSTERITY_ARCHIVE_PROBE"  # = repository.probe.PROBE_ENV (not imported: start-up time)
FETCH_NOT_FOUND = 1
FETCH_FATAL = 126


class _NotPlain(Exception):
    """The configuration needs the full loader (missing, unusual or invalid values)."""


def _unset(path: str, name: str) -> str:
    raise _NotPlain(name)


def _opt_str(section: dict[str, Any], key: str) -> str | None:
    v = section.get(key)
    if v is not None and not isinstance(v, str):
        raise _NotPlain(key)
    return v


def _number(section: dict[str, Any], key: str, bounds: tuple[int, int], *, integer: bool, above: bool) -> Any:
    """An optional number within the schema's bounds (``above``: strictly above the low one)."""
    value = section.get(key)
    if value is None:
        return None
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise _NotPlain(key)
    if (value <= low if above else value < low) or value > high:
        raise _NotPlain(key)
    return value


class LeanContext:
    """What push and fetch need, read from posterity.toml without the schema, by the same
    rules (``config.plain``); anything not plainly valid falls back to the full loader."""

    def __init__(self, path: Path) -> None:
        from ..config import plain

        try:
            data = plain.interpolate(tomllib.loads(path.read_text()), _unset)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise _NotPlain(str(exc)) from exc
        repo, enc, sources = data.get("repository"), data.get("encryption"), data.get("sources", {})
        if not isinstance(repo, dict) or not isinstance(enc, dict) or not isinstance(sources, dict):
            raise _NotPlain("sections")
        url = _opt_str(repo, "url")
        try:
            self.url = plain.check_store_url(url or "")
        except ValueError:
            raise _NotPlain("url") from None  # the full loader names what is wrong (memory://, relative file://)
        self.store_args: dict[str, Any] = {"endpoint": _opt_str(repo, "endpoint"), "region": _opt_str(repo, "region") or "auto",
                           "access_key_id": _opt_str(repo, "access_key_id"),
                           "secret_access_key": _opt_str(repo, "secret_access_key")}
        self.store_args["connect_timeout"] = _number(repo, "connect_timeout", plain.CONNECT_TIMEOUT,
                                                     integer=False, above=True)
        self.store_args["request_timeout"] = _number(repo, "request_timeout", plain.REQUEST_TIMEOUT,
                                                     integer=False, above=True)
        self.store_args["max_part_size_mib"] = _number(repo, "max_part_size_mib", plain.MAX_PART_SIZE_MIB,
                                                       integer=True, above=False)
        recipients = enc.get("recipients")
        try:
            if not isinstance(recipients, list) or not recipients:
                raise ValueError("no recipients")
            plain.check_recipients(recipients)
        except ValueError:
            raise _NotPlain("recipients") from None
        level = _number(enc, "zstd_level", plain.ZSTD_LEVEL, integer=True, above=False)
        threads = _number(enc, "zstd_threads", plain.ZSTD_THREADS, integer=True, above=False)
        from ..pipeline.stages import Stages

        self.stages = Stages(tuple(recipients), zstd_level=plain.ZSTD_LEVEL_DEFAULT if level is None else level,
                             zstd_threads=-1 if threads is None else threads)
        self.identity_file = _opt_str(enc, "identity_file")
        self.kinds = {name: body.get("kind") for name, body in sources.items() if isinstance(body, dict)}

    def archive(self, source: str):
        """The WAL archive of ``source`` in the configured repository."""
        from ..repository.walarchive import open_archive

        return open_archive(self.url, source, **self.store_args)

    def source(self, name: str | None) -> str:
        if name:
            if not traits(self.kinds.get(name)).wal_archive:
                raise _NotPlain("source")
            return name
        names = [n for n, k in self.kinds.items() if traits(k).wal_archive]
        if len(names) != 1:
            raise _NotPlain("source")
        return names[0]

    def identities(self, identity_file: str | None) -> list:
        from ..pipeline.keys import load_identities

        return load_identities(identity_file or self.identity_file)


def _config_path(given: str | None) -> Path:
    p = given or os.environ.get("POSTERITY_CONFIG") or "posterity.toml"
    return Path(p)


def _full_context(given: str | None):
    """The normal, validated context (slower; exact error messages)."""
    from ..config import load_config
    from ..operations.context import Context

    return Context(load_config(given)[0])


def push(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        lean = LeanContext(_config_path(args.config))
        archive, stages = lean.archive(lean.source(args.source)), lean.stages
    except _NotPlain:
        from ..operations.wal import physical_source

        ctx = _full_context(args.config)
        archive, stages = ctx.repo.wal(physical_source(ctx, args.source)), ctx.stages
    if os.environ.get(PROBE_ENV):  # `posterity doctor` runs archive_command: check, store nothing
        archive.require_repository()
        return 0
    from ..repository.walarchive import system_identifier

    result = archive.push(path, stages, sysid=system_identifier("."))
    if args.verbose:
        print(f"{result.name}: {result.status} ({result.raw_size} → {result.size} bytes, {result.seconds:.3f}s)",
              file=sys.stderr)
    return 0


def fetch(args: argparse.Namespace) -> int:
    from ..repository.walarchive import WalNotArchived

    try:
        lean = LeanContext(_config_path(args.config))
        archive, identities = lean.archive(lean.source(args.source)), lean.identities(args.identity)
    except _NotPlain:
        from ..operations.wal import physical_source

        ctx = _full_context(args.config)
        archive, identities = ctx.repo.wal(physical_source(ctx, args.source)), ctx.identities(args.identity)
    try:
        archive.fetch(args.name, Path(args.dest), identities)
    except WalNotArchived as exc:
        if args.verbose:
            print(exc.message, file=sys.stderr)
        return FETCH_NOT_FOUND
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m posterity.cli.walfast", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("push", "fetch"):
        p = sub.add_parser(name)
        p.add_argument("-c", "--config", help="posterity.toml (default: $POSTERITY_CONFIG, then ./posterity.toml)")
        p.add_argument("-s", "--source", help="the postgres-physical source (default: the only one)")
        p.add_argument("-v", "--verbose", action="store_true")
        if name == "push":
            p.add_argument("path")
        else:
            p.add_argument("--identity", default=os.environ.get("POSTERITY_IDENTITY_FILE"))
            p.add_argument("name")
            p.add_argument("dest")
    args = parser.parse_args(argv)
    from ..errors import PosterityError
    from ..repository.walnames import WalNameError

    try:
        return push(args) if args.command == "push" else fetch(args)
    except (PosterityError, WalNameError) as exc:
        message = exc.message if isinstance(exc, PosterityError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        if isinstance(exc, PosterityError) and exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        if args.command == "fetch":
            return FETCH_FATAL
        return exc.exit_code if isinstance(exc, PosterityError) else 2
    except OSError as exc:  # permission, disk full: named, with a hint, not "unexpected"
        from ..errors import from_os_error

        err = from_os_error(exc, f"wal {args.command}")
        print(f"error: {err.message}\nhint: {err.hint}", file=sys.stderr)
        return FETCH_FATAL if args.command == "fetch" else err.exit_code
    except Exception as exc:  # never let a push look successful, nor a fetch look like "not found"
        print(f"error: wal {args.command}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return FETCH_FATAL if args.command == "fetch" else 1


if __name__ == "__main__":
    sys.exit(main())
