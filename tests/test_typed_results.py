"""Operations return typed results (issue 15, item 3); ``to_dict()`` is exactly what ``--json``
prints, so the CLI, the dashboard and scripts read the same shapes as before.

A files source and a local repository: quick, no database needed.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tests.support.ops import config_text, files_context, make_context, make_keys

from posterity.cli.common import State
from posterity.cli.main import cli
from posterity.operations.init import InitResult, init_repository


def run_cli(ctx, *args: str):
    state = State()
    state._ctx = ctx
    result = CliRunner().invoke(cli, list(args), obj=state, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def ctx(tmp_path):
    return files_context(tmp_path)


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


def test_list_json_prints_the_typed_summaries(ctx):
    from posterity.operations.backup import backup_source
    from posterity.operations.catalog import BackupSummary, backup_summaries

    init_repository(ctx)
    backup_source(ctx, "config", tags=["daily"])
    backup_source(ctx, "config")  # the same tree: reuses the first payload
    first, second = ctx.repo.manifests("config")
    summaries = backup_summaries(ctx, "config")
    assert all(isinstance(s, BackupSummary) for s in summaries)
    expected = [
        {"id": m.id, "source": "config", "kind": "files", "started_at": m.started_at, "finished_at": m.finished_at,
         "size": m.size, "raw_size": m.raw_size, "tags": m.tags, "unchanged_from": m.facts.get("unchanged_from")}
        for m in (first, second)
    ]
    assert expected[0]["tags"] == ["daily"] and expected[1]["unchanged_from"] == first.id
    assert [s.to_dict() for s in summaries] == expected
    assert [list(s.to_dict()) for s in summaries] == [list(e) for e in expected]  # same key order
    assert json.loads(run_cli(ctx, "--json", "list", "--source", "config")) == expected


def test_audit_records_are_typed_and_print_as_stored(ctx, tmp_path):
    from posterity.operations.audit import AuditRecord, read_audit
    from posterity.operations.backup import backup_source

    init_repository(ctx)
    backup_source(ctx, "config")
    records = read_audit(ctx)
    assert [type(r) for r in records] == [AuditRecord, AuditRecord]
    init, backup = records
    assert (init.operation, init.result, backup.operation, backup.result) == ("init", "succeeded", "backup", "succeeded")
    assert backup.source == "config" and backup["source"] == "config" and backup.get("nothing") is None
    stored = [json.loads((tmp_path / "repo" / r["key"]).read_text()) | {"key": r["key"]} for r in records]
    assert [r.to_dict() for r in records] == stored
    assert records == stored  # a record still reads (and compares) as the stored JSON object
    assert json.loads(run_cli(ctx, "--json", "audit")) == stored
    human = run_cli(ctx, "audit")
    assert "backup" in human and f"backup={backup['backup']}" in human and "succeeded" in human


def test_wal_status_is_typed_and_prints_the_same_json(tmp_path):
    import socket

    from posterity.operations.wal_status import TimelineStatus, WalGap, WalStatus, wal_status

    with socket.socket() as s:  # a port nothing listens on: the server is "not reachable"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    datadir = tmp_path / "pgdata"
    (datadir / "pg_wal" / "archive_status").mkdir(parents=True)
    for n in ("000000010000000000000005.ready", "000000010000000000000006.ready", "x.done"):
        (datadir / "pg_wal" / "archive_status" / n).write_text("")
    recipient, identity = make_keys(tmp_path)
    extra = (f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "postgresql://postgres@127.0.0.1:{port}/postgres"\n'
             f'data_directory = "{datadir}"\n')
    ctx = make_context(config_text(f"file://{tmp_path}/repo", recipient, identity, tmp_path / "state", {}, extra))
    init_repository(ctx)
    names = ["000000010000000000000001", "000000010000000000000002", "000000010000000000000004"]
    for name in names:  # 03 is missing: a gap
        (tmp_path / name).write_bytes(bytes(8192))
        ctx.repo.wal("pitr").push(tmp_path / name, ctx.stages)

    st = wal_status(ctx, "pitr")
    assert isinstance(st, WalStatus) and [type(t) for t in st.timelines] == [TimelineStatus]
    assert st.gaps == [WalGap(1, 1, "000000010000000000000003", "000000010000000000000003")]
    assert st.failing and st.ready_files == 2 and st.server.reachable is False and st.server.error
    (tl,) = st.timelines
    expected = {
        "source": "pitr", "location": ctx.repo.location,
        "timelines": [{"timeline": 1, "segments": 3, "partial": 0, "history": False, "bytes": tl.bytes,
                       "first": names[0], "newest": names[-1], "newest_archived_at": tl.newest_archived_at,
                       "base_backups": 0}],
        "gaps": [{"timeline": 1, "missing": 1, "first": "000000010000000000000003",
                  "last": "000000010000000000000003"}],
        "incomplete": [], "base_backups": 0, "newest": names[-1], "newest_archived_at": tl.newest_archived_at,
        "newest_age_seconds": st.newest_age_seconds, "server": {"reachable": False, "error": st.server.error}, "wal_method": "archive", "ready_files": 2,
    }
    assert tl.bytes > 0 and tl.newest_archived_at and st.newest_age_seconds is not None
    assert st.to_dict() == expected and list(st.to_dict()) == list(expected)  # keys and their order as before
    state = State()
    state._ctx = ctx
    cli_json = CliRunner().invoke(cli, ["--json", "wal", "status", "--source", "pitr"], obj=state)
    assert cli_json.exit_code == 1  # a gap
    printed = json.loads(cli_json.output)
    assert {k: v for k, v in printed.items() if k != "newest_age_seconds"} == {
        k: v for k, v in expected.items() if k != "newest_age_seconds"}
    state = State()
    state._ctx = ctx
    human = CliRunner().invoke(cli, ["wal", "status", "--source", "pitr"], obj=state, env={"COLUMNS": "300"})
    assert human.exit_code == 1
    assert "GAP on timeline 1: 1 missing, 000000010000000000000003 … 000000010000000000000003" in human.output
    assert f"{names[0]} … {names[-1]}" in human.output and ".ready files waiting: 2" in human.output
    assert "server: not reachable" in human.output


def test_verify_content_checks_are_typed_and_print_as_before(ctx):
    from posterity.operations.backup import backup_source
    from posterity.operations.content_checks import ContentFacts
    from posterity.operations.verify import verify

    init_repository(ctx)
    backup_source(ctx, "config")
    (m,) = ctx.repo.manifests("config")
    (art,) = m.artifacts
    result = verify(ctx, read_data=True)
    assert result.ok and list(result.checked) == [art.key]
    facts = result.checked[art.key]
    assert isinstance(facts, ContentFacts) and facts.content == "tar listing" and facts.warning is None
    # the tree: live/, conf/, app.toml
    assert facts.counts == {"entries": 3}
    assert facts.to_dict() == {"content": "tar listing", "entries": 3}
    printed = json.loads(run_cli(ctx, "--json", "verify", "--read-data"))
    assert printed["checked"] == {art.key: {"content": "tar listing", "entries": 3}} and printed["ok"] is True
    assert ContentFacts("decoded only", warning="no pg_restore").to_dict() == {
        "content": "decoded only", "warning": "no pg_restore"}


def test_archiver_and_stream_states_leave_out_exactly_the_keys_they_did():
    from posterity.operations.wal_status_result import ArchiverState, StreamState, WalGap

    down = ArchiverState(reachable=False, error="connection refused")
    assert down.to_dict() == {"reachable": False, "error": "connection refused"}
    up = ArchiverState(reachable=True, archived_count=3, last_archived_wal="000000010000000000000003",
                       last_archived_time="t", failed_count=0, current_wal="000000010000000000000004")
    base = {"reachable": True, "archived_count": 3, "last_archived_wal": "000000010000000000000003",
            "last_archived_time": "t", "failed_count": 0, "last_failed_wal": None, "last_failed_time": None,
            "current_wal": "000000010000000000000004", "failing": False}
    assert up.to_dict() == base  # no lag_segments: the current segment could not be compared
    up.lag_known = True  # compared, but the repository holds no segment of its timeline: null, not absent
    assert up.to_dict() == {**base, "lag_segments": None}
    up.trailing_gap = WalGap(1, None, None, "000000010000000000000003", trailing=True)
    up.lag_seconds, up.warning = 1.5, "elsewhere"
    assert list(up.to_dict()) == [*base, "lag_segments", "trailing_gap", "lag_seconds", "warning"]
    assert up.to_dict()["trailing_gap"] == {"timeline": 1, "missing": None, "first": None,
                                            "last": "000000010000000000000003", "trailing": True}
    stream = StreamState(slot="posterity_pitr", interval_seconds=10, slot_state=None)
    assert stream.to_dict() == {"slot": "posterity_pitr", "interval_seconds": 10, "slot_state": None,
                                "streamer": None, "local_backlog": None, "failing": False, "failing_reasons": []}
    stream.failing_reasons.append("the replication slot does not exist")
    stream.newest_snapshot = "000000010000000000000004.8192.stream.zst.age"
    d = stream.to_dict()
    assert d["failing"] is True and "newest_snapshot_at" not in d and d["newest_snapshot"] == stream.newest_snapshot


def test_schedule_next_is_typed_and_prints_the_same_json(ctx):
    from datetime import UTC, datetime

    from posterity.scheduler.upcoming import UpcomingRuns, upcoming_runs

    class Sched:  # one [[schedule]] entry as the config model holds it
        name, cron, sources, tag, jitter, ping_url, timeout = "daily", "0 2 * * *", ["config"], "daily", "0s", None, None

    ctx.config.schedule.append(Sched())
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    runs = upcoming_runs(ctx.config, 2, now=now)
    assert runs == [UpcomingRuns("daily", "0 2 * * *", ["config"], ["daily"],
                                 [datetime(2026, 3, 2, 2, 0, tzinfo=UTC), datetime(2026, 3, 3, 2, 0, tzinfo=UTC)])]
    assert runs[0].to_dict() == {"cron": "0 2 * * *", "sources": ["config"], "tags": ["daily"],
                                 "next": ["2026-03-02T02:00:00+00:00", "2026-03-03T02:00:00+00:00"]}
    printed = json.loads(run_cli(ctx, "--json", "schedule", "next", "-n", "1"))
    assert list(printed) == ["daily"] and list(printed["daily"]) == ["cron", "sources", "tags", "next"]
