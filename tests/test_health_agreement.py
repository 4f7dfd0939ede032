"""One health model: `posterity status`, the daemon's metrics and /healthz, and the dashboard
judge the same repository state the same way (they all ask ``operations/health.py``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner
from tests.support.ops import make_context, make_keys

from posterity.cli.main import State, cli
from posterity.errors import PosterityError
from posterity.operations.backup import backup_source
from posterity.operations.status import status
from posterity.scheduler.cron import ManualClock
from posterity.scheduler.daemon import Daemon
from posterity.scheduler.metrics import Metrics
from posterity.scheduler.notify import Notifier
from posterity.web.data import Dashboard

EXPECTED = {"fresh": "ok", "old": "stale", "new": "never", "down": "failing"}


@pytest.fixture
def repo_state(tmp_path):
    """Four sources, one of each state two hours from now: a backup within max_age, one older
    than max_age, none at all, and a failed backup with no success before it."""
    recipient, identity = make_keys(tmp_path)
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "app.conf").write_text("listen = 8080\n")
    text = f"""
[repository]
url = "file://{tmp_path}/repo"
[encryption]
recipients = ["{recipient}"]
identity_file = "{identity}"
[general]
state_dir = "{tmp_path / 'state'}"
staging_dir = "{tmp_path / 'state' / 'staging'}"
[daemon]
metrics_listen = "127.0.0.1:0"
[sources.fresh]
kind = "files"
paths = ["{folder}"]
max_age = "1d"
[sources.old]
kind = "files"
paths = ["{folder}"]
max_age = "1h"
[sources.new]
kind = "files"
paths = ["{folder}"]
[sources.down]
kind = "files"
paths = ["{tmp_path / 'missing'}"]
"""
    ctx = make_context(text)
    ctx.repo.init([recipient])
    backup_source(ctx, "fresh")
    backup_source(ctx, "old")
    with pytest.raises(PosterityError):
        backup_source(ctx, "down")
    return ctx, datetime.now(UTC) + timedelta(hours=2)


def _metric(text: str, name: str, **labels: str) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{re.escape(sel)}\}} (\S+)$", text, re.M)
    assert m, f"{name}{{{sel}}} missing from /metrics"
    return float(m.group(1))


def test_status_metrics_healthz_and_dashboard_agree_on_every_source(repo_state):
    ctx, now = repo_state

    # posterity status (the library call and the CLI's JSON)
    assert {s.source: s.state for s in status(ctx, now=now).sources} == EXPECTED

    # the dashboard's overview (and so /api/status)
    board = Dashboard(ctx, cache_seconds=0, clock=lambda: now)
    assert {s["source"]: s["state"] for s in board.overview()["status"]["sources"]} == EXPECTED

    # the daemon: seeded from the same repository, its clock at the same instant
    daemon = Daemon(ctx, clock=ManualClock(now), notifier=Notifier([], set()), metrics=Metrics())
    daemon.start()
    try:
        daemon.tick()  # the first tick runs the freshness check
        host, port = daemon.metrics_address or ("", 0)
        metrics = httpx.get(f"http://{host}:{port}/metrics", timeout=5).text
        for source, state in EXPECTED.items():
            for other in ("ok", "never", "stale", "archiving", "failing"):
                assert _metric(metrics, "posterity_source_state", source=source, state=other) == (
                    1.0 if other == state else 0.0), (source, other)
            # stale: no fresh backup, whatever else is wrong (a failing source that never succeeded is stale too)
            assert _metric(metrics, "posterity_source_stale", source=source) == (
                0.0 if state == "ok" else 1.0), source
        sources = httpx.get(f"http://{host}:{port}/healthz?sources", timeout=5)
        assert sources.status_code == 200
        assert json.loads(sources.text) == {"loop": "ok", "sources": EXPECTED}
        plain = httpx.get(f"http://{host}:{port}/healthz", timeout=5)
        assert plain.status_code == 200 and plain.text == "ok\n"  # a failing backup is not a stuck daemon
    finally:
        daemon.shutdown()


def test_status_cli_json_matches_the_evaluator(repo_state):
    ctx, _ = repo_state
    state = State()
    state._ctx = ctx
    result = CliRunner().invoke(cli, ["--json", "status"], obj=state)
    data = json.loads(result.output)
    # now (not two hours on) "old" is still fresh
    assert {s["source"]: s["state"] for s in data["sources"]} == {**EXPECTED, "old": "ok"}
    assert result.exit_code == data["exit_code"] == 13


def test_the_daemon_keeps_a_bounded_run_history(repo_state):
    from posterity.operations.prune import PruneReport
    from posterity.scheduler.cron import parse_cron
    from posterity.scheduler.daemon import RUN_HISTORY, Job

    ctx, now = repo_state
    daemon = Daemon(ctx, clock=ManualClock(now), notifier=Notifier([], set()), metrics=Metrics(),
                    prune_fn=lambda ctx, sources: PruneReport(dry_run=False))
    empty = Job("empty", parse_cron("0 * * * *"), (), (), timedelta(0))
    for i in range(RUN_HISTORY + 5):
        daemon.run_job(empty, now + timedelta(hours=i))
    assert len(daemon.runs) == RUN_HISTORY
    assert daemon.runs[0].nominal == now + timedelta(hours=5)  # the oldest five are forgotten
    assert daemon.runs[-1].nominal == now + timedelta(hours=RUN_HISTORY + 4)
