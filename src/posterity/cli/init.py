"""``posterity init``: create the repository described in posterity.toml."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json


@click.command("init")
@json_option
@pass_state
def init(state) -> None:
    """Create the repository (refuses one that exists; nothing is overwritten)."""
    from ..operations.init import init_repository

    result = init_repository(state.context())
    if state.json:
        emit_json(result.to_dict())
    else:
        click.echo(f"created repository {result.id} at {result.location}")


def register(cli: click.Group) -> None:
    cli.add_command(init)
