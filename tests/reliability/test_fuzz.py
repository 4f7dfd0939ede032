"""Fuzzing the two documents a person may edit by hand: posterity.toml and manifests.

Any TOML text, and any mutation of a valid configuration, either loads or raises the
tool's ConfigError whose every problem starts with the key path it is about — never
another exception (which the CLI would show as "unexpected"). Any bytes, and any mutation
of a valid manifest, either parse into a manifest that every command can use, or raise
ManifestInvalid.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tomllib
from datetime import date, datetime, time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posterity.config import Config, loads_config, parse_config
from posterity.config.load import ConfigProblems
from posterity.errors import ConfigError, ManifestInvalid
from posterity.repository import Manifest
from posterity.repository.point import Point

# POSTERITY_FUZZ_EXAMPLES=3000 for a longer hunt (300 keeps the suite fast).
FUZZ = settings(
    max_examples=int(os.environ.get("POSTERITY_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
VALID_CONFIG: dict[str, Any] = {
    "repository": {
        "url": "s3://bucket/prefix",
        "endpoint": "http://127.0.0.1:9000",
        "region": "auto",
        "access_key_id": "${HOME}",
        "secret_access_key": "secret",
    },
    "encryption": {
        "recipients": [RECIPIENT],
        "identity_file": "/etc/posterity/key.txt",
        "zstd_level": 3,
    },
    "general": {"staging_dir": "/var/tmp", "lock_ttl": 3600},
    "sources": {
        "db": {
            "kind": "postgres",
            "dsn": "postgresql://u@h/db",
            "globals": True,
            "row_counts": "exact",
            "exclude_table_data": ["public.sessions"],
            "drill": "scratch-db",
            "lock_wait_timeout": "10min",
            "checks": [{"sql": "select 1", "min": 1, "max": 2, "description": "one"}],
        },
        "etc": {"kind": "files", "paths": ["/etc/posters"], "exclude": ["*.tmp"]},
    },
}

toml_scalars = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.sampled_from(
        [
            "postgres",
            "files",
            "meilisearch",
            "s3://b/p",
            "file:///tmp/x",
            "${NOPE_NOT_SET}",
            "$${literal}",
            "r2://acct/bucket/p",
            "10min",
            "-1",
            RECIPIENT,
            "",
        ]
    ),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths_of(v, (*prefix, i))
    return out


@st.composite
def mutated(draw, base: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in paths_of(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "set":
            parent[path[-1]] = draw(toml_values)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(toml_values)
    return doc


def assert_config_error_names_paths(exc: ConfigError, doc: Any) -> None:
    """Every problem starts with the key path it is about, rooted at a key of the document."""
    problems = exc.problems if isinstance(exc, ConfigProblems) else [exc.message]
    assert problems
    roots = [str(k) for k in doc] if isinstance(doc, dict) else []
    roots += list(Config.model_fields)  # a required section that is missing
    for p in problems:
        if p.startswith(("(top level): ", "not valid TOML: ")):
            continue
        assert ": " in p, f"problem without a key path: {p!r}"
        path = p.split(": ", 1)[0]
        assert any(path == r or path.startswith((f"{r}.", f"{r}[")) for r in roots), (
            f"problem {p!r} does not start with a key path of the document (roots {roots})"
        )


@FUZZ
@given(st.text(max_size=400))
def test_any_toml_text_loads_or_raises_config_error(text):
    try:
        doc: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = {}
    try:
        loads_config(text)
    except ConfigError as exc:
        assert_config_error_names_paths(exc, doc)


@FUZZ
@given(mutated(VALID_CONFIG))
def test_any_mutated_config_loads_or_raises_config_error_with_key_paths(doc):
    try:
        config = parse_config(doc)
    except ConfigError as exc:
        assert_config_error_names_paths(exc, doc)
        return
    for name in config.sources:  # what loaded is usable
        assert config.source(name).kind in ("postgres", "files", "meilisearch")


def test_the_unmutated_config_loads():
    config = parse_config(copy.deepcopy(VALID_CONFIG))
    assert config.sources["db"].checks[0].min == 1


VALID_MANIFEST: dict[str, Any] = {
    "id": "20240115T020000Z-ab12",
    "source": "db",
    "kind": "postgres",
    "started_at": "2024-01-15T02:00:00+00:00",
    "finished_at": "2024-01-15T02:01:00+00:00",
    "posterity_version": "0.1.0",
    "host": "h",
    "artifacts": [
        {
            "name": "db.pgdump",
            "key": "backups/db/20240115T020000Z-ab12/db.pgdump.zst.age",
            "kind": "pg_dump-custom",
            "size": 10,
            "sha256": "a" * 64,
            "raw_size": 20,
            "stages": [{"name": "zstd", "level": 3}, {"name": "age", "recipients": [RECIPIENT]}],
            "facts": {"database": "db"},
        }
    ],
    "facts": {"row_counts": {"public.posters": 3}, "server_version_num": 150000},
    "tags": ["daily"],
    "restore_by_hand": ["age -d …"],
    "format": 1,
}


def assert_usable(m: Manifest) -> None:
    """What list, show, verify and restore do with a manifest must not crash."""
    assert isinstance(m.size, int) and isinstance(m.raw_size, int)
    assert (m.finished - m.started).total_seconds() is not None
    assert ",".join(m.tags) is not None
    for a in m.artifacts:
        assert isinstance(a.key, str) and isinstance(a.name, str) and isinstance(a.kind, str)
        assert isinstance(a.stages, list) and isinstance(a.facts, dict)
        assert a.sha256[:16] + "…"
    assert isinstance(m.facts, dict)
    Manifest.from_json(m.to_json(), "again")


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_parse_as_manifest_or_raise_manifest_invalid(data):
    try:
        m = Manifest.from_json(data, "backups/db/x/manifest.json")
    except ManifestInvalid:
        return
    assert_usable(m)


@FUZZ
@given(mutated(VALID_MANIFEST))
def test_any_mutated_manifest_is_usable_or_raises_manifest_invalid(doc):
    data = json.dumps(_json_safe(doc)).encode()
    try:
        m = Manifest.from_json(data, "backups/db/x/manifest.json")
    except ManifestInvalid as exc:
        assert "backups/db/x/manifest.json" in exc.message
        return
    assert_usable(m)


@FUZZ
@given(
    mutated(
        {
            "id": "20240115T020000Z-ab12",
            "started_at": "2024-01-15T02:00:00+00:00",
            "finished_at": "2024-01-15T02:01:00+00:00",
            "host": "h",
            "posterity_version": "0.1.0",
            "backups": [
                {
                    "source": "db",
                    "kind": "postgres",
                    "backup": "20240115T020000Z-ab12",
                    "manifest": "backups/db/20240115T020000Z-ab12/manifest.json",
                }
            ],
            "tags": [],
            "format": 1,
        }
    )
)
def test_any_mutated_restore_point_parses_or_raises_manifest_invalid(doc):
    with contextlib.suppress(ManifestInvalid):
        Point.from_json(json.dumps(_json_safe(doc)).encode(), "points/x.json")
