"""The local-PostgreSQL adapter (``posterity.localpg``): programs run as the cluster's OS user
in a clean environment, bounded, their failures converted into the error tree."""

from __future__ import annotations

import time

import pytest

from posterity.errors import SourceTimeout, ToolMissing
from posterity.localpg import find_binary, owner_env, psql, run_as, server_owner, wait_ready
from posterity.localpg.binaries import installed
from posterity.localpg.ports import free_port


def test_run_as_runs_as_the_server_owner_without_our_pg_settings(monkeypatch):
    owner = server_owner()
    assert owner is not None
    monkeypatch.setenv("PGHOST", "elsewhere.invalid")
    monkeypatch.setenv("PGPASSWORD", "not-for-children")
    proc = run_as(owner, ["sh", "-c", "id -un; env"], timeout=10)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0] == owner.pw_name
    assert not [ln for ln in lines if ln.startswith("PG")]
    assert "PGHOST" not in owner_env(owner) and owner_env(owner, {"PGPORT": "1"})["PGPORT"] == "1"


def test_a_program_that_does_not_answer_is_a_source_timeout_and_is_stopped():
    owner = server_owner()
    assert owner is not None
    began = time.monotonic()
    with pytest.raises(SourceTimeout, match="sleep did not finish within 1s"):
        run_as(owner, ["sleep", "30"], timeout=1)
    assert time.monotonic() - began < 5


def test_a_missing_program_is_tool_missing():
    owner = server_owner()
    assert owner is not None
    with pytest.raises(ToolMissing):
        run_as(owner, ["/nonexistent/pg_ctl", "status"], timeout=5)
    with pytest.raises(ToolMissing, match="is not in"):
        find_binary("psql", None, bin_dir=__import__("pathlib").Path("/nonexistent"))


def test_client_programs_match_or_exceed_the_server_major():
    versions = installed("psql")
    assert versions, "the test host has /usr/lib/postgresql/<major>/bin/psql"
    oldest, newest = versions[0], versions[-1]
    assert find_binary("psql", oldest[0]) == oldest[1]
    assert find_binary("psql", newest[0] + 100) == newest[1]  # none fits: the newest there is


def test_psql_and_wait_ready_on_a_running_and_a_missing_server(pg_cluster):
    owner = server_owner()
    assert owner is not None
    assert wait_ready(pg_cluster.bin_dir, owner, host=pg_cluster.host, port=pg_cluster.port,
                      user=pg_cluster.superuser, timeout=10) is None
    proc = psql(pg_cluster.bin_dir, owner, host=pg_cluster.host, port=pg_cluster.port, user=pg_cluster.superuser,
                commands=["select 40 + 2"], timeout=30, switch_user=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "42"
    began = time.monotonic()
    answer = wait_ready(pg_cluster.bin_dir, owner, host="127.0.0.1", port=free_port(), timeout=1)
    assert answer and "no response" in answer and time.monotonic() - began < 5


def test_psycopg_errors_after_connecting_are_converted_into_the_error_tree(pg_cluster):
    from posterity.errors import SourceError, SourceUnreachable
    from posterity.sources.postgres.tools import connect, query_errors

    check = "the check"
    with connect(pg_cluster.dsn()) as conn:
        with pytest.raises(SourceError, match="refused the check: division by zero"), query_errors("test", check):
            conn.execute("select 1/0")
        conn.execute("set statement_timeout = '50ms'")
        with pytest.raises(SourceTimeout, match="cancelled the check"), query_errors("test", check):
            conn.execute("select pg_sleep(5)")
    with connect(pg_cluster.dsn()) as conn, pytest.raises(SourceUnreachable, match="Lost the connection"), \
            query_errors("test", check):
        conn.execute("select pg_terminate_backend(pg_backend_pid())")
