"""The layers keep their order (issue 15, item 6): read from the source's imports, no import run.

- Only ``storage/`` itself and ``repository/`` import the store backends (``storage.s3``,
  ``storage.local``, ``storage.memory``, and the S3 client/error modules).
- Nothing above ``repository/`` imports ``storage`` at all (it would hold an ObjectStore);
  the modules that still do are listed in ``STORAGE_EXCEPTIONS`` with the reason, and a test
  fails when one of them no longer needs its entry, so the list can only shrink.
- ``sources/`` never import ``operations/``.
- ``sources/`` read stored artifacts only through the Repository (``read_artifact``,
  ``open_artifact``): nothing there imports the pipeline's stages or keys (decoding,
  encoding, identities); only ``pipeline.budget`` (the shared memory budget).
- No import cycles among modules, counting imports inside functions (a lazy import hides a
  cycle, it does not remove it) but not ``if TYPE_CHECKING:`` blocks, and not a submodule's
  own package (``from . import views`` runs the package first, which is not a cycle).
- No module is over ``MAX_LINES`` (400) lines, except those in ``SIZE_EXCEPTIONS``; an entry
  whose module is back under the limit fails the test, like ``STORAGE_EXCEPTIONS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

BACKENDS = {
    "posterity.storage.s3",
    "posterity.storage.local",
    "posterity.storage.memory",
    "posterity.storage.s3client",
    "posterity.storage.s3errors",
}
MAY_IMPORT_BACKENDS = ("posterity.storage", "posterity.repository")

# module -> why it still imports ``posterity.storage`` (remove the entry when it stops).
STORAGE_EXCEPTIONS: dict[str, str] = {
}


def _module_names() -> dict[str, Path]:
    out = {}
    for path in (SRC / "posterity").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports at run time (at any depth, outside TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(target)  # names defined in the module (or package) itself
    resolved = set()
    for name in found:
        if not name.startswith("posterity"):
            continue
        while name not in MODULES and "." in name:
            name = name.rpartition(".")[0]
        if name != module and not module.startswith(name + "."):  # own package: not a cycle
            resolved.add(name)
    return resolved


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_only_repository_and_storage_import_store_backends():
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if not _in(m, *MAY_IMPORT_BACKENDS)
        for t in targets & BACKENDS
    )
    assert offenders == []


def test_nothing_above_repository_imports_storage_except_listed():
    importers = {
        m
        for m, targets in GRAPH.items()
        if not _in(m, *MAY_IMPORT_BACKENDS) and any(_in(t, "posterity.storage") for t in targets)
    }
    assert sorted(importers - set(STORAGE_EXCEPTIONS)) == [], "a new module reaches the store"
    stale = sorted(set(STORAGE_EXCEPTIONS) - importers)
    assert stale == [], f"no longer imports storage: remove from STORAGE_EXCEPTIONS: {stale}"


def test_sources_never_import_operations():
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if _in(m, "posterity.sources")
        for t in targets
        if _in(t, "posterity.operations")
    )
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_sources_read_artifacts_only_through_the_repository():
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if _in(m, "posterity.sources")
        for t in targets
        if _in(t, "posterity.pipeline") and t != "posterity.pipeline.budget"
    )
    assert offenders == []


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ],
)
def test_cycle_finder_finds_cycles(graph, expected):
    assert _cycles(graph) == expected


def test_import_reader_sees_lazy_imports_and_skips_type_checking():
    # The cycle this test was written for was made of imports inside functions.
    assert "posterity.operations.identity" in GRAPH["posterity.operations.guarded"]
    assert "posterity.operations.verify" not in GRAPH["posterity.operations.verify_dependents"]
    assert "posterity.repository.walarchive" in GRAPH["posterity.cli.walfast"]  # imported inside functions


KEY_PREFIXES = ("backups/", "wal/", "locks/", "points/", "drills/", "audit/", "probes/", "keys/")
LAYOUT_MODULES = {"posterity.repository.layout", "posterity.repository.walnames"}


def _key_literals(path: Path) -> list[str]:
    """String constants (f-string parts included) that start like a store key; docstrings and
    comments do not count."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and node.value.startswith(KEY_PREFIXES)):
            found.append(f"{path.name}:{node.lineno}: {node.value[:40]!r}")
    return found


def test_keys_are_spelled_only_in_the_layout():
    offenders = [hit for m, p in MODULES.items() if m not in LAYOUT_MODULES for hit in _key_literals(p)]
    assert offenders == []


def test_command_modules_never_import_the_cli_entry_point():
    # cli/main.py registers every command module (by name, through importlib); a command
    # module that imported main back would be a cycle this graph cannot see.
    offenders = sorted(m for m, targets in GRAPH.items() if _in(m, "posterity.cli") and "posterity.cli.main" in targets)
    assert offenders == []


MAX_LINES = 400

# module path under src/ -> why it is still over MAX_LINES (remove the entry once it is split).
SIZE_EXCEPTIONS: dict[str, str] = {}


def _line_counts() -> dict[str, int]:
    return {p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in MODULES.values()}


def test_no_module_is_over_the_line_limit_except_listed():
    # Issue 15: a module a maintainer can read in one sitting; split by responsibility instead.
    counts = _line_counts()
    over = {path: n for path, n in counts.items() if n > MAX_LINES}
    assert sorted(set(over) - set(SIZE_EXCEPTIONS)) == [], f"over {MAX_LINES} lines: {over}"
    stale = sorted(set(SIZE_EXCEPTIONS) - set(over))
    assert stale == [], f"no longer over {MAX_LINES} lines (or gone): remove from SIZE_EXCEPTIONS: {stale}"


# The restore functions of the sources; a drill reaches them only through its kind's restorer.
SOURCE_RESTORES = {"restore_logical", "restore_tar", "restore_indexes", "restore_file", "restore_pitr"}
# drill module -> why it still calls its source's restore itself (remove the entry when it stops).
DRILL_OWN_RESTORE: dict[str, str] = {
    "posterity.operations.drill_pitr": "its checks need the WAL plan (segments, segment size, tail), and it plans "
    "with the base's timeline only, where the restorer also follows timelines other base backups were taken on",
}


def _imported_names(path: Path) -> set[str]:
    return {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) for a in n.names}


def test_drills_restore_through_their_kinds_restorer():
    drills = sorted(m for m in MODULES if m.startswith("posterity.operations.drill_") and m != "posterity.operations.drill_report")
    assert drills  # the per-kind drill modules exist where this test looks for them
    for m in drills:
        own = sorted(_imported_names(MODULES[m]) & SOURCE_RESTORES)
        through = any(t.startswith("posterity.operations.restorers.") for t in GRAPH[m])
        if m in DRILL_OWN_RESTORE:
            assert own and not through, f"{m} no longer needs its DRILL_OWN_RESTORE entry"
        else:
            assert not own and through, f"{m} restores with {own} instead of its kind's restorer"
