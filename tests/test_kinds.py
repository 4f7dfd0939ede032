"""Kind knowledge lives in one place (issue 15, item 1): ``posterity/kinds.py`` names the kinds
and their traits; other code asks a trait, never ``kind == "…"``.

Read from the source (no import run): every string constant equal to a kind name, docstrings
aside, must be in ``kinds.py``, in the kind's own package (``sources/postgres/`` for both
PostgreSQL kinds, ``sources/meilisearch/``, ``sources/files/``), or listed below with the reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from posterity import kinds
from posterity.sources.registry import SOURCES

PKG = Path(__file__).resolve().parents[1] / "src" / "posterity"

OWN_PACKAGE = {
    kinds.POSTGRES: "sources/postgres/",
    kinds.POSTGRES_PHYSICAL: "sources/postgres/",
    kinds.MEILISEARCH: "sources/meilisearch/",
    kinds.FILES: "sources/files/",
}

# (module path under posterity/, literal) -> why the literal may stay there. A stale entry fails.
ALLOWED: dict[tuple[str, str], str] = {
    ("sources/registry.py", kinds.POSTGRES): "the registry: one entry per kind (its key)",
    ("sources/registry.py", kinds.POSTGRES_PHYSICAL): "the registry: one entry per kind (its key)",
    ("sources/registry.py", kinds.MEILISEARCH): "the registry: one entry per kind (its key)",
    ("sources/registry.py", kinds.FILES): "the registry: one entry per kind (its key)",
    ("localpg/binaries.py", kinds.POSTGRES): "the server binary's name, not the kind",
    ("localpg/owner.py", kinds.POSTGRES): "the OS user that owns a cluster, not the kind",
    ("localpg/server.py", kinds.POSTGRES): "the maintenance database, not the kind",
    ("pgcluster.py", kinds.POSTGRES): "the default database and superuser, not the kind",
    ("operations/drill_pitr.py", kinds.POSTGRES): "the maintenance database, not the kind",
    ("operations/drill_postgres.py", kinds.POSTGRES): "the maintenance database, not the kind",
    ("sources/postgres/physical.py", kinds.FILES): 'the facts key "files" (a base backup\'s file count)',
    ("cli/listing.py", kinds.FILES): 'the manifest facts key "files" (the file list)',
    ("operations/diff.py", kinds.FILES): 'the manifest facts key "files" (the file list)',
    ("operations/drill_files.py", kinds.FILES): 'the facts key "files" and the check group "files"',
    ("cli/restore_render.py", kinds.FILES): 'the files restore result\'s count "files" (a number of files)',
}

# Restore and drill code that issue 15's restore/drill step (branch i15r) moves into the
# registry; its literals are allowed until then. Not checked for staleness: once that branch is
# merged, delete the entries it no longer needs (the test then keeps them gone).
PENDING_RESTORE_DRILL: dict[tuple[str, str], str] = {}


def kind_literals(path: Path) -> list[tuple[int, str]]:
    """(line, literal) of every string constant equal to a kind name; docstrings do not count."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return sorted(
        (n.lineno, n.value) for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and n.value in kinds.TRAITS and id(n) not in docstrings
    )


def _found() -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for line, literal in kind_literals(path):
            if rel == "kinds.py" or rel.startswith(OWN_PACKAGE[literal]):
                continue
            out.setdefault((rel, literal), []).append(line)
    return out


def test_no_kind_literal_outside_kinds_module_and_own_package():
    found = _found()
    offenders = {f"{rel}:{lines}: {lit!r}" for (rel, lit), lines in found.items()
                 if (rel, lit) not in ALLOWED and (rel, lit) not in PENDING_RESTORE_DRILL}
    assert offenders == set(), "ask a trait in posterity/kinds.py instead"


def test_kind_literal_allow_list_has_no_stale_entry():
    found = _found()
    assert sorted(k for k in ALLOWED if k not in found) == []


def test_kind_literal_reader_sees_comparisons_and_skips_docstrings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""kind = "files" here is prose."""\n'
                 'def f(c):\n    """Is c "postgres-physical"?"""\n'
                 '    return c.kind == "postgres-physical" or c.kind in ("files",)\n')
    assert kind_literals(f) == [(4, "files"), (4, "postgres-physical")]


def test_registry_and_traits_name_the_same_kinds():
    assert sorted(SOURCES) == list(kinds.KINDS)
    for kind, entry in SOURCES.items():
        assert entry.traits is kinds.TRAITS[kind]
        assert entry.model.model_fields["kind"].annotation.__args__ == (kind,)  # Literal[kind]
        module, cls = entry.factory.split(":")
        __import__(module)
        assert getattr(sys.modules[module], cls).kind == kind


def test_traits_answer_what_the_code_branches_on():
    assert kinds.with_trait("wal_archive") == (kinds.POSTGRES_PHYSICAL,)
    assert kinds.point_restore_order() == (kinds.POSTGRES, kinds.MEILISEARCH, kinds.FILES)
    assert kinds.with_trait("file_list") == (kinds.FILES,)
    physical = SimpleNamespace(kind=kinds.POSTGRES_PHYSICAL, wal="stream")
    assert kinds.runs_wal_streamer(physical)
    assert not kinds.runs_wal_streamer(SimpleNamespace(kind=kinds.POSTGRES_PHYSICAL, wal="archive"))
    assert not kinds.runs_wal_streamer(SimpleNamespace(kind=kinds.FILES, wal="stream"))
    assert kinds.archives_by_command(SimpleNamespace(kind=kinds.POSTGRES_PHYSICAL, wal="archive"))
    assert not kinds.archives_by_command(physical)
    assert not kinds.archives_by_command(SimpleNamespace(kind=kinds.POSTGRES, wal="archive"))
    # A manifest written by a newer version, of a kind this one does not know, has no traits.
    assert kinds.of(SimpleNamespace(kind="mysql")) == kinds.Traits()
    assert kinds.traits(None) == kinds.Traits()


def test_kinds_module_stays_lean():
    # cli/walfast.py (archive_command) imports it: it must not pull in pydantic or the registry.
    code = ("import sys, posterity.kinds; "
            "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'posterity.sources'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
