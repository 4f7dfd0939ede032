"""Every command has help text and is documented in the README (as sqlite-utils does)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from posterity.cli.main import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, (*prefix, name))


COMMANDS = list(walk(cli))


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help(path, cmd):
    assert (cmd.help or "").strip(), f"posterity {' '.join(path)} has no help text"
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), f"posterity {' '.join(path)} {param.opts[0]} has no help"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_top_level_command_is_in_readme(name):
    assert f"posterity {name}" in README, f"README does not mention `posterity {name}`"
