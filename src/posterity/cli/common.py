"""What every command module shares: the CLI state (config path, --json, -v) and the
decorators that pass it. Command modules import this, never ``main`` (which imports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click


@dataclass
class State:
    config_path: str | None = None
    json: bool = False
    verbose: int = 0
    _ctx: Any = field(default=None, repr=False)

    def context(self):
        if self._ctx is None:
            from ..config import load_config
            from ..operations.context import Context

            config, path = load_config(self.config_path)
            self._ctx = Context(config, path)
        return self._ctx


pass_state = click.make_pass_decorator(State, ensure=True)


def json_option(f):
    def callback(ctx: click.Context, _param, value: bool) -> bool:
        if value:
            ctx.ensure_object(State).json = True
        return value

    return click.option("--json", "json_out", is_flag=True, expose_value=False, callback=callback,
                        help="Machine-readable JSON output.")(f)
