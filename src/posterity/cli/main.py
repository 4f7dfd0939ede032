"""The ``posterity`` command: parse, call one operation, render. No logic of its own.

Exit codes are documented in ``posterity.errors.EXIT_CODES`` and in the README.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import click

from .. import __version__
from ..errors import EXIT_CODES, PosterityError, Terminated
from .common import State

EPILOG = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items())


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, readable=False), envvar="POSTERITY_CONFIG",
              help="posterity.toml to use (default: $POSTERITY_CONFIG, then ./posterity.toml).")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable JSON output.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="posterity")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, json_out: bool, verbose: int) -> None:
    """Posterity: compressed, encrypted, verified backups of PostgreSQL, Meilisearch and files
    into S3/R2 or a folder, with one-command restore."""
    state = ctx.ensure_object(State)
    state.config_path = config_path
    state.json = state.json or json_out
    state.verbose = verbose
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# Each module defines ``register(cli)``; a new command is one module and one line here.
COMMAND_MODULES = [
    "key",
    "init",
    "backup",
    "listing",
    "restore",
    "config_cmd",
    "unlock",
    "diff",
    "demo",
    "verify",
    "drill",
    "prune",
    "status",
    "audit",
    "daemon",
    "schedule",
    "wal",
    "doctor",
    "web",
]


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(cli)


_register()


def _on_sigterm(signum, _frame) -> None:
    """SIGTERM (systemd stopping a timer's service, `kill`): unwind like Ctrl-C, once.

    Every running operation's token is cancelled first (its child processes are killed, so
    nothing stays blocked on them), then ``Terminated`` is raised here in the main thread;
    the operation's cleanup releases its lock, removes uncommitted payloads and writes the
    audit record. A second SIGTERM during that cleanup is ignored: cleanup is bounded."""
    import signal

    from ..operations.cancel import cancel_all

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cancel_all(Terminated)
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    import signal

    from .. import malloc_arenas

    malloc_arenas.cap_malloc_arenas()  # before any worker thread: see the module
    state = State()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, obj=state, standalone_mode=False)
    except PosterityError as exc:
        _report(exc, state)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        if isinstance(exc.__cause__, Terminated):
            _terminated()
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 1 else exc.exit_code)
    except Terminated:
        _terminated()
    except KeyboardInterrupt:
        click.echo("Interrupted; nothing uncommitted was kept.", err=True)
        sys.exit(130)
    except OSError as exc:  # permission, disk full, missing file: the user's to fix, not a bug
        import errno
        import os

        from ..errors import from_os_error

        if exc.errno == errno.EPIPE:  # `posterity list | head`: the reader left; nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        logging.getLogger("posterity").debug("OS error reaching the CLI", exc_info=True)  # -vv: where
        err = from_os_error(exc)
        _report(err, state)
        sys.exit(err.exit_code)
    except subprocess.TimeoutExpired as exc:
        from ..errors import SourceTimeout

        err = SourceTimeout(f"{_program(exc.cmd)} did not finish within {exc.timeout:.0f}s and was stopped.")
        _report(err, state)
        sys.exit(err.exit_code)
    except Exception as exc:  # a bug: say so plainly, with the traceback on request
        if state.verbose:
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: run again with -v for the traceback, and please report it.", err=True)
        sys.exit(1)


def _program(cmd: object) -> str:
    """The program of a command line, never its arguments (they may hold a password)."""
    first = cmd[0] if isinstance(cmd, list | tuple) and cmd else cmd
    return Path(str(first)).name or "a program"


def _terminated() -> None:
    """After the clean stop, end *by SIGTERM*: what the parent expects of a program it
    terminated (PostgreSQL treats an archive_command killed by SIGTERM at shutdown as
    such, not as a failure that aborts the archiver; systemd counts it a clean stop;
    shells show 143)."""
    import os
    import signal

    click.echo("error: Stopped by SIGTERM; the lock was released and nothing uncommitted was kept.", err=True)
    click.echo("hint: Run the command again when the system is up; committed backups are intact.", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    sys.exit(Terminated.exit_code)  # not reached unless SIGTERM is blocked


def _report(exc: PosterityError, state: State) -> None:
    if state.json:
        click.echo(json.dumps(exc.to_dict(), indent=2))
        return
    click.echo(f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


def config_path_arg(path: str | None) -> Path | None:
    return Path(path) if path else None
