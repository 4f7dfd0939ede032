"""``posterity daemon``: run the [[schedule]] jobs until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

import click

from .. import kinds
from .common import pass_state


@click.command("daemon")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve /metrics and /healthz here (default: [daemon] metrics_listen; port 0 picks one).")
@pass_state
def daemon(state, metrics_listen: str | None) -> None:
    """Run the [[schedule]] jobs on time, prune after them, alert and serve metrics.

    Sources with wal = "stream" get a WAL streamer for as long as the daemon runs.

    Logs go to stdout (one line per event, for journald or docker logs). SIGTERM or Ctrl-C
    stops cleanly: no new run starts, a backup in flight gets [daemon] stop_timeout to
    finish and is otherwise cancelled (dump killed, nothing committed, lock released); the
    daemon exits at most 5 s later. A second signal exits at once.
    """
    from ..errors import ConfigError
    from ..scheduler.daemon import Daemon

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("posterity")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if state.verbose > 1 else logging.INFO)
    root.propagate = False

    ctx = state.context()
    streaming = [n for n, c in ctx.config.sources.items() if kinds.runs_wal_streamer(c)]
    if not ctx.config.schedule and not streaming:
        raise ConfigError("There is no [[schedule]] in the configuration, so the daemon has nothing to run.",
                          hint="Add a [[schedule]] section (see `posterity config example`).")
    if metrics_listen is not None:
        ctx.config.daemon.metrics_listen = metrics_listen or None
    d = Daemon(ctx)

    def on_signal(signum, _frame) -> None:
        if d.stop_event.is_set():
            logging.getLogger("posterity.daemon").warning("Second signal: exiting now.")
            sys.stdout.flush()
            import os

            os._exit(128 + signum)
        logging.getLogger("posterity.daemon").info("Received %s; stopping.", signal.Signals(signum).name)
        d.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    d.run()


def register(cli: click.Group) -> None:
    cli.add_command(daemon)
