"""Every kind registers its restorer and drill once; `posterity restore` takes the options of
the source's kind only; every restore runs the one guard (a wrong key is named before anything
is created); results are typed; a failed drill returns its report with a new error.

Real files, a real local repository; no PostgreSQL or Meilisearch needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.filestree import make_tree, run, snapshot
from tests.support.project import make_project

from posterity.config import load_config
from posterity.operations.context import Context


@pytest.fixture
def project(tmp_path, capsys):
    base = tmp_path / "live"
    roots = make_tree(base)
    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["config"] = {"kind": "files", "paths": roots}
    p.write_config()
    assert run(capsys, p.config, "init").code == 0
    r = run(capsys, p.config, "--json", "backup", "config")
    assert r.code == 0, r.err
    p.roots = roots  # type: ignore[attr-defined]
    return p


def test_every_kind_registers_a_restorer_and_a_drill_whose_options_the_command_has():
    from posterity.cli.restore import restore as command
    from posterity.operations.restore import restorers
    from posterity.sources.registry import SOURCES, load

    params = {p.name for p in command.params}
    found = restorers()
    assert set(found) == set(SOURCES)
    for kind, entry in SOURCES.items():
        r = found[kind]
        assert r.kind == kind
        assert set(r.options) <= params, (kind, set(r.options) - params)
        assert set(r.point_options) <= set(r.options)
        assert callable(load(entry.drill))
    tagged = set().union(*(r.options for r in found.values()))
    # Every option of the command applies to some kind, except these four (and --json).
    assert params - tagged == {"source", "ref", "point", "identity_file", "json_out"}


def test_an_option_of_another_kind_is_a_usage_error_naming_the_kinds_it_applies_to(project, tmp_path, capsys):
    dest = tmp_path / "restored"
    r = run(capsys, project.config, "restore", "config", "latest", "--to", str(dest), "--to-database", "x")
    assert r.code == 2 and "--to-database applies to postgres restores, not to files restores (config)" in r.err, r
    r = run(capsys, project.config, "restore", "config", "latest", "--to", str(dest), "--check-counts")
    assert r.code == 2 and "--check-counts applies to meilisearch, postgres restores" in r.err, r
    r = run(capsys, project.config, "restore", "--point", "latest", "--to", str(dest), "--path", "etc")
    assert r.code == 2 and "--path applies to files restores, not to restore --point" in r.err, r
    assert not dest.exists()  # refused before anything was read or written
    # An option of its own kind still works.
    r = run(capsys, project.config, "restore", "config", "latest", "--to", str(dest), "--overwrite")
    assert r.code == 0, r.err
    assert snapshot(dest, project.roots)  # type: ignore[attr-defined]


def test_a_files_restore_with_a_wrong_key_is_refused_as_a_wrong_key_before_anything_is_created(
    project, tmp_path, capsys
):
    from posterity.pipeline import generate_identity

    generate_identity(project.root / "other.txt")
    dest = tmp_path / "restored"
    r = run(capsys, project.config, "restore", "config", "latest", "--to", str(dest),
            "--identity", str(project.root / "other.txt"))
    assert r.code == 7 and "is encrypted to the identity given" in r.err, r
    assert not dest.exists()


def test_a_restore_returns_a_typed_result_whose_dict_is_the_json_and_is_audited(project, tmp_path, capsys):
    from posterity.operations.restore import restore
    from posterity.operations.restore_results import FilesRestoreResult
    from posterity.operations.restorers.files import FilesRestoreRequest

    ctx = Context(*load_config(project.config))
    result = restore(ctx, "config", "latest", FilesRestoreRequest(to=tmp_path / "a"))
    assert isinstance(result, FilesRestoreResult)
    assert result.target == str(tmp_path / "a") and result.count("files") > 0
    assert snapshot(tmp_path / "a", project.roots) == snapshot(Path("/"), project.roots)  # type: ignore[attr-defined]
    cli = json.loads(run(capsys, project.config, "--json", "restore", "config", "latest", "--to", str(tmp_path / "b")).out)
    assert set(cli) == set(result.to_dict()) == {
        "backup", "source", "unchanged_from", "target", "paths", "restored", "files", "dirs", "symlinks",
        "bytes", "overwritten", "owners", "seconds",
    }
    audit = json.loads(run(capsys, project.config, "--json", "audit", "--op", "restore").out)
    done = [a for a in audit if a.get("result") == "succeeded"]
    assert [a["target"] for a in done][-2:] == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_a_failed_drill_returns_its_stored_report_and_a_new_error_of_the_same_type(project, capsys):
    from posterity.errors import IntegrityError
    from posterity.operations.drill import run_drill

    ctx = Context(*load_config(project.config))
    manifest = ctx.repo.find("latest", "config")
    payload = Path(ctx.config.repository.url.removeprefix("file://")) / manifest.artifacts[0].key
    payload.write_bytes(b"\0" * payload.stat().st_size)  # damaged: every byte zero
    outcome = run_drill(ctx, "config")
    assert isinstance(outcome.error, IntegrityError)
    assert outcome.error.message.startswith("Drill of config (backup ")
    cause = outcome.error.__cause__
    assert isinstance(cause, IntegrityError) and not cause.message.startswith("Drill of")  # not mutated
    assert not outcome.report.ok and outcome.report.error and outcome.report.key
    stored = ctx.repo.drill_reports("config", last=True)[0]
    assert stored["id"] == outcome.report.id and stored["ok"] is False
    r = run(capsys, project.config, "--json", "drill", "--source", "config")
    body = json.loads(r.out)
    assert r.code == 6 and body["failures"][0]["report"]["ok"] is False


def test_reworded_is_a_new_error_of_the_same_type_and_the_old_one_is_unchanged():
    from posterity.config.load import ConfigProblems
    from posterity.operations.guarded import reworded

    old = ConfigProblems(None, ["a", "b"])  # an error type whose __init__ takes other arguments
    new = reworded(old, "Drill of x failed: " + old.message)
    assert type(new) is ConfigProblems and new.exit_code == 2 and new.hint == old.hint
    assert new.message.startswith("Drill of x failed: 2 problem(s)") and str(new) == new.message
    assert new.problems == ["a", "b"] and new.__cause__ is old
    assert old.message.startswith("2 problem(s)") and str(old) == old.message
