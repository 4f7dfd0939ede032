"""No exception is changed in place to say more (issue 15, item 3): an adapter that adds what it
undid raises a new error of the same type (same exit code and hint) ``from`` the original,
which stays as it was (``errors.reworded``). ``errors.say_nothing_committed`` is the one
documented exception to the rule (it keeps the same object on purpose)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.project import make_project

import posterity
from posterity.errors import IntegrityError, PosterityError, RestoreTargetError, reworded

SRC = Path(posterity.__file__).parent
CARRIED = {"message", "hint", "args", "exit_code"}


def test_reworded_is_a_new_error_of_the_same_type_chained_to_the_unchanged_original():
    original = RestoreTargetError("The folder is not empty.", hint="Choose another folder.")
    new = reworded(original, original.message + " Nothing was changed.")
    assert type(new) is RestoreTargetError and new is not original
    assert (new.message, new.hint, new.exit_code) == (
        "The folder is not empty. Nothing was changed.", "Choose another folder.", original.exit_code)
    assert str(new) == new.message and new.__cause__ is original
    assert original.message == "The folder is not empty." and original.args == ("The folder is not empty.",)


def _mutations(tree: ast.AST) -> list[tuple[int, str]]:
    """Assignments to ``<caught>.message/hint/args`` inside ``except … as caught`` blocks."""
    found = []
    for handler in ast.walk(tree):
        if not isinstance(handler, ast.ExceptHandler) or handler.name is None:
            continue
        for node in ast.walk(handler):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AugAssign) else []
            for t in targets:
                if (isinstance(t, ast.Attribute) and t.attr in CARRIED and isinstance(t.value, ast.Name)
                        and t.value.id == handler.name):
                    found.append((node.lineno, f"{handler.name}.{t.attr}"))
    return found


def test_no_caught_error_is_changed_in_place_anywhere_in_the_source():
    found = {str(p.relative_to(SRC)): m for p in sorted(SRC.rglob("*.py")) if (m := _mutations(ast.parse(p.read_text())))}
    assert found == {}, f"raise errors.reworded(exc, …) from exc instead: {found}"


def test_a_damaged_dump_says_nothing_was_changed_in_a_new_error_from_the_original(tmp_path, sample_db):
    from posterity.config import load_config
    from posterity.operations.context import Context
    from posterity.operations.restore import restore
    from posterity.operations.restorers.postgres import PostgresRestoreRequest

    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn}
    p.write_config()
    p.run("init", check=True)
    p.run("backup", "db", check=True)
    ctx = Context(*load_config(p.config))
    manifest = ctx.repo.find("latest", "db")
    [dump] = [a for a in manifest.artifacts if a.kind == "pg_dump-custom"]
    payload = tmp_path / "repo" / dump.key
    body = bytearray(payload.read_bytes())
    body[400:800] = bytes(400)  # past the age header: the key is right, the data is not
    payload.write_bytes(bytes(body))
    target = f"{sample_db.name}_never"
    try:
        restore(ctx, "db", "latest", PostgresRestoreRequest(to_database=target))
    except PosterityError as exc:
        err = exc
    else:
        raise AssertionError("a damaged dump restored")
    assert isinstance(err, IntegrityError) and err.message.endswith(" Nothing was changed."), err.message
    cause = err.__cause__
    assert type(cause) is type(err) and cause.hint == err.hint  # type: ignore[union-attr]
    assert err.message == cause.message + " Nothing was changed."  # type: ignore[union-attr]
    assert "Nothing was changed" not in cause.message  # type: ignore[union-attr]
    assert sample_db.cluster.psql(f"select count(*) from pg_database where datname = '{target}'").strip() == "0"
