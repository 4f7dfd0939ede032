"""`posterity status` and the audit trail, against a real repository and the sample database."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner
from tests.support.ops import FrozenNow, config_text, make_context, make_keys

from posterity.cli.main import State, cli
from posterity.errors import SourceError
from posterity.operations.audit import read_audit
from posterity.operations.backup import backup_source
from posterity.operations.init import init_repository
from posterity.operations.prune import prune
from posterity.operations.restore import restore
from posterity.operations.restorers.postgres import PostgresRestoreRequest
from posterity.operations.status import EXIT_FAILING, EXIT_STALE, size_anomaly, status


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(ctx, *args: str):
    state = State()
    state._ctx = ctx
    return CliRunner().invoke(cli, list(args), obj=state)


@pytest.fixture
def env(tmp_path, sample_db, pg_cluster):
    recipient, identity = make_keys(tmp_path)
    flaky_db = f"flaky_{uuid.uuid4().hex[:8]}"
    sources = {
        "db": sample_db.dsn,
        "down": f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing",
        "flaky": pg_cluster.dsn(flaky_db),
    }
    text = config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state", sources)
    text = text.replace('[sources.db]\n', '[sources.db]\nmax_age = "26h"\n')
    text = text.replace("[general]\n", '[general]\nmax_age = "2d"\n')
    ctx = make_context(text)
    init_repository(ctx)
    yield ctx, flaky_db
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{flaky_db}" WITH (FORCE)')


def test_status_reports_fresh_failing_and_recovered_sources(env, pg_cluster):
    ctx, flaky_db = env
    backup_source(ctx, "db", tags=["daily"])
    with pytest.raises(SourceError) as down_error:
        backup_source(ctx, "down")
    with pytest.raises(SourceError):
        backup_source(ctx, "flaky")  # its database does not exist yet
    pg_cluster.psql(f'CREATE DATABASE "{flaky_db}"')
    backup_source(ctx, "flaky")

    report = status(ctx)
    by = {s.source: s for s in report.sources}
    assert by["db"].state == "ok" and by["db"].max_age == "26h" and by["db"].age_seconds < 60
    assert by["down"].state == "failing" and by["down"].last_success is None
    assert by["down"].last_failure is not None and by["down"].last_failure.error == str(down_error.value)
    assert by["flaky"].state == "ok" and by["flaky"].last_failure is not None  # recovered
    assert by["flaky"].max_age == "2d"  # the [general] default
    assert report.exit_code == EXIT_FAILING

    result = run_cli(ctx, "status", "--json")
    assert result.exit_code == EXIT_FAILING
    data = json.loads(result.output)
    assert {s["source"]: s["state"] for s in data["sources"]} == {"db": "ok", "down": "failing", "flaky": "ok"}

    # A day and a half later "db" (26h) is stale; "flaky" (2d) is not.
    later = status(ctx, now=datetime.now(UTC) + timedelta(hours=36))
    by = {s.source: s.state for s in later.sources}
    assert by == {"db": "stale", "down": "failing", "flaky": "ok"}


def test_status_exit_codes_stale_and_never(tmp_path, sample_db):
    recipient, identity = make_keys(tmp_path)
    text = config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state",
                       {"db": sample_db.dsn, "new": sample_db.dsn})
    text = text.replace("[general]\n", '[general]\nmax_age = "1h"\n')
    ctx = make_context(text)
    ctx.repo.init([recipient])
    backup_source(ctx, "db")
    assert {s.source: s.state for s in status(ctx).sources} == {"db": "ok", "new": "never"}
    assert status(ctx).exit_code == EXIT_STALE
    backup_source(ctx, "new")
    assert status(ctx).exit_code == 0
    result = run_cli(ctx, "status")
    assert result.exit_code == 0 and "db" in result.output and "new" in result.output
    assert status(ctx, now=datetime.now(UTC) + timedelta(hours=2)).exit_code == EXIT_STALE


def test_status_flags_a_backup_much_smaller_than_the_median(tmp_path, sample_db, monkeypatch):
    recipient, identity = make_keys(tmp_path)
    ctx = make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state",
                                   {"db": sample_db.dsn}))
    ctx.repo.init([recipient])
    clock = FrozenNow(monkeypatch, "posterity.operations.backup")
    t = datetime(2024, 5, 1, tzinfo=UTC)
    for i in range(3):
        clock.when = t + timedelta(hours=i)
        backup_source(ctx, "db")
    assert status(ctx).sources[0].size_anomaly_median is None
    with psycopg.connect(sample_db.dsn, autocommit=True) as conn:  # the classic truncated dump
        conn.execute("TRUNCATE posters CASCADE")
    clock.when = t + timedelta(hours=4)
    small = backup_source(ctx, "db").manifest
    st = status(ctx).sources[0]
    assert st.sizes[-1] == small.size and st.size_anomaly_median is not None
    assert small.size < 0.5 * st.size_anomaly_median
    assert st.state == "ok"  # shown and alerted on, but a shrink alone does not fail status


def test_size_anomaly_rule():
    assert size_anomaly([100, 100, 100, 40], 0.5) == 100
    assert size_anomaly([100, 100, 100, 60], 0.5) is None
    assert size_anomaly([100, 10], 0.5) is None  # too little history
    assert size_anomaly([1000, 1000, 1000, 100, 100, 100, 100, 100, 90], 0.5, window=5) is None


def test_audit_holds_one_record_per_operation_including_failures(env, pg_cluster):
    ctx, _ = env
    backup_source(ctx, "db")
    with pytest.raises(SourceError):
        backup_source(ctx, "down")
    target = f"restored_{uuid.uuid4().hex[:8]}"
    try:
        restore(ctx, "db", "latest", PostgresRestoreRequest(to_database=target))
    finally:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    prune(ctx)

    records = read_audit(ctx)
    summary = [(r["operation"], r["result"], r.get("source")) for r in records]
    assert summary == [
        ("init", "succeeded", None),
        ("backup", "succeeded", "db"),
        ("backup", "failed", "down"),
        ("restore", "succeeded", "db"),
        ("prune", "succeeded", None),
    ]
    for r in records:
        assert r["host"] == socket.gethostname() and r["user"] and r["key"].startswith("audit/")
        assert ctx.repo.store.stat(r["key"]) is not None
    # The local mirror has the same records.
    local = read_audit(ctx, local=True)
    assert [(r["operation"], r["result"], r["key"]) for r in local] == [
        (r["operation"], r["result"], r["key"]) for r in records
    ]

    result = run_cli(ctx, "audit", "--op", "backup", "--json")
    assert result.exit_code == 0
    assert [(r["result"], r["source"]) for r in json.loads(result.output)] == [("succeeded", "db"), ("failed", "down")]
    result = run_cli(ctx, "audit", "--source", "down")
    assert result.exit_code == 0 and "failed" in result.output and "succeeded" not in result.output
    result = run_cli(ctx, "audit", "--since", "2999-01-01", "--json")
    assert json.loads(result.output) == []
    result = run_cli(ctx, "audit", "--since", "yesterday")
    assert result.exit_code != 0 and "neither a duration" in result.output
