"""Operations return typed results (issue 15, item 3); ``to_dict()`` is exactly what ``--json``
prints, so the CLI, the dashboard and scripts read the same shapes as before.

A files source and a local repository: quick, no database needed.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tests.support.ops import config_text, make_context, make_keys

from posterity.cli.common import State
from posterity.cli.main import cli
from posterity.operations.init import InitResult, init_repository


def run_cli(ctx, *args: str):
    state = State()
    state._ctx = ctx
    result = CliRunner().invoke(cli, list(args), obj=state)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def ctx(tmp_path):
    live = tmp_path / "live"
    (live / "conf").mkdir(parents=True)
    (live / "conf" / "app.toml").write_text("answer = 42\n")
    recipient, identity = make_keys(tmp_path)
    extra = f'[sources.config]\nkind = "files"\npaths = ["{live}"]\n'
    return make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state", {}, extra))


def test_init_returns_the_descriptor_it_stored(ctx, tmp_path):
    result = init_repository(ctx)
    assert isinstance(result, InitResult)
    stored = json.loads((tmp_path / "repo" / "posterity.json").read_text())
    assert result.to_dict() == {"location": ctx.repo.location, **stored}
    assert list(result.to_dict()) == ["location", *stored]  # the same order as before
    assert result.id == stored["id"] and result.recipients == stored["recipients"]


def test_init_json_prints_the_descriptor(ctx, tmp_path):
    out = json.loads(run_cli(ctx, "--json", "init"))
    stored = json.loads((tmp_path / "repo" / "posterity.json").read_text())
    assert out == {"location": ctx.repo.location, **stored}


def test_init_human_line_names_id_and_location(ctx, tmp_path):
    out = run_cli(ctx, "init")
    stored = json.loads((tmp_path / "repo" / "posterity.json").read_text())
    assert out == f"created repository {stored['id']} at {ctx.repo.location}\n"
