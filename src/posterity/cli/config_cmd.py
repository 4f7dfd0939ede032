"""``posterity config check`` and ``posterity config example``."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json


@click.group("config")
def config_group() -> None:
    """Validate posterity.toml or print a commented example."""


@config_group.command("check")
@json_option
@pass_state
def check(state) -> None:
    """Validate the configuration; print every problem with its key path and a fix."""
    from ..config import ConfigProblems, load_config

    try:
        config, path = load_config(state.config_path)
    except ConfigProblems as exc:
        if state.json:
            emit_json({"ok": False, "problems": exc.problems})
            raise SystemExit(exc.exit_code) from None
        raise
    if state.json:
        emit_json({"ok": True, "path": str(path), "sources": sorted(config.sources)})
    else:
        click.echo(f"{path}: ok ({len(config.sources)} source(s): {', '.join(sorted(config.sources)) or 'none'})")


@config_group.command("example")
def example() -> None:
    """Print a commented sample posterity.toml generated from the schema."""
    from ..config.example import example_config

    click.echo(example_config(), nl=False)


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
