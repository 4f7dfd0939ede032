"""Drill reports are typed (issue 15, item 3): the listing, ``last_drill`` and ``status`` return
``DrillReport``/``DrillSummary`` objects whose ``to_dict()`` is the stored JSON, key for key and
in order, so the dashboard's /api/drills and ``status --json`` print what they did before.

A files source and a local repository: quick, no database needed.
"""

from __future__ import annotations

import json

import pytest
from tests.support.ops import files_context

from posterity.operations.backup import backup_source
from posterity.operations.catalog import drill_reports
from posterity.operations.drill import drill, last_drill
from posterity.operations.drill_report import CheckResult, DrillReport, DrillSummary
from posterity.operations.init import init_repository
from posterity.operations.status import status


@pytest.fixture
def ctx(tmp_path):
    ctx = files_context(tmp_path)
    init_repository(ctx)
    backup_source(ctx, "config")
    return ctx


def test_stored_drill_reports_read_back_typed_and_print_as_stored(ctx):
    first, second = drill(ctx, "config"), drill(ctx, "config")
    stored = ctx.repo.drill_reports("config")  # the JSON as the repository holds it, in its order
    reports = drill_reports(ctx, "config")
    assert all(isinstance(r, DrillReport) for r in reports)
    assert sorted(r.id for r in reports) == sorted([first.id, second.id])  # ids of one second sort by suffix
    assert all(isinstance(c, CheckResult) for c in reports[0].checks) and reports[0].checks
    assert [r.to_dict() for r in reports] == stored
    assert [json.dumps(r.to_dict()) for r in reports] == [json.dumps(s) for s in stored]  # same key order
    by_id = {r.id: r for r in reports}
    assert by_id[second.id].to_dict() == second.to_dict()  # what was stored is what the drill returned

    newest = last_drill(ctx, "config")
    assert isinstance(newest, DrillReport) and newest.id == stored[-1]["id"] and newest.ok


def test_status_shows_the_newest_drill_as_a_typed_summary_with_the_same_json(ctx):
    report = drill(ctx, "config")
    st = status(ctx)
    row = next(s for s in st.sources if s.source == "config")
    assert isinstance(row.last_drill, DrillSummary)
    assert row.to_dict()["last_drill"] == {"id": report.id, "backup": report.backup, "time": report.finished_at,
                                           "ok": True, "restore_seconds": report.restore_seconds, "error": None}
    assert list(row.to_dict()["last_drill"]) == ["id", "backup", "time", "ok", "restore_seconds", "error"]
    assert row.to_dict()["archiving"] is None  # a files source is not archived


def test_a_stored_report_keeps_keys_this_version_does_not_know():
    data = DrillReport(id="d1", source="s", kind="files", backup="b1", checks=[CheckResult("files", True, "3")]).to_dict()
    newer = {**data, "from_the_future": {"x": 1}}
    back = DrillReport.from_dict(newer)
    assert back.checks == [CheckResult("files", True, "3")]
    assert back.to_dict() == newer and list(back.to_dict()) == list(newer)


def test_status_holds_the_archiving_fact_and_prints_its_summary_or_its_error(ctx):
    from datetime import UTC, datetime

    from posterity.operations.health import ArchivingFact, HealthSnapshot, evaluate

    summary = {"failing": True, "failed_count": 3, "alerts": [{"message": "archive_command fails"}]}
    now = datetime.now(UTC)
    for fact, printed in [(ArchivingFact(summary, alerting=True), summary),
                          (ArchivingFact(error="could not connect"), {"error": "could not connect"})]:
        row = evaluate(ctx.config, HealthSnapshot({}, archiving={"config": fact}), now).sources[0]
        assert row.archiving is fact and row.to_dict()["archiving"] == printed
        assert row.archiving.alerts == (summary["alerts"] if fact.error is None else [])
        assert row.state == ("archiving" if fact.alerting else "never")
