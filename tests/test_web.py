"""The dashboard over HTTP (Starlette's test client in process, and a real uvicorn socket for
the bind rules): same answers as the CLI, the token rules, and no secret in any answer."""

from __future__ import annotations

import json
import warnings

import httpx
import pytest
from click.testing import CliRunner
from tests.support.webrepo import WEB_TOKEN, WebRepo, build_web_repo

from posterity.cli.main import State, cli
from posterity.errors import ConfigError
from posterity.web import WebServer, create_app
from posterity.web.auth import COOKIE

with warnings.catch_warnings():  # Starlette asks for httpx2 in its test client; httpx is what we pin
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AUTH = {"Authorization": f"Bearer {WEB_TOKEN}"}
PAGES = ["/", "/sources/db", "/sources/down", "/drills", "/verify", "/points", "/audit",
         "/audit?op=backup&result=failed&source=down"]
APIS = ["/api/status", "/api/overview", "/api/sources/db/backups", "/api/sources/db/retention",
        "/api/drills", "/api/verify", "/api/points", "/api/audit"]


@pytest.fixture(scope="module")
def web_repo(tmp_path_factory, pg_cluster, s3_server):
    repo, dbname = build_web_repo(tmp_path_factory.mktemp("web"), pg_cluster, s3_server)
    yield repo
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(scope="module")
def client(web_repo: WebRepo):
    with TestClient(create_app(web_repo.ctx, token=WEB_TOKEN, cache_seconds=0)) as c:
        yield c


def run_cli(repo: WebRepo, *args: str):
    state = State()
    state._ctx = repo.ctx
    return CliRunner().invoke(cli, list(args), obj=state)


def _same_but_time(a: dict, b: dict) -> None:
    """Two status reports taken moments apart: equal but for the clock."""
    for d in (a, b):
        d.pop("time")
        for s in d["sources"]:
            s.pop("age_seconds")
    assert a == b


def test_api_status_is_what_posterity_status_json_prints(client, web_repo):
    result = run_cli(web_repo, "--json", "status")
    assert result.exit_code == 13  # "down" failed
    cli_report = json.loads(result.output)
    api = client.get("/api/status", headers=AUTH)
    assert api.status_code == 200
    web_report = api.json()
    assert {s["source"]: s["state"] for s in web_report["sources"]} == {"db": "ok", "down": "failing"}
    _same_but_time(web_report, cli_report)


def test_api_backups_and_retention_match_the_cli(client, web_repo):
    listed = json.loads(run_cli(web_repo, "--json", "list", "--source", "db").output)
    assert client.get("/api/sources/db/backups", headers=AUTH).json() == listed
    assert [b["id"] for b in listed] == web_repo.db_backups
    plan = json.loads(run_cli(web_repo, "--json", "prune", "--dry-run", "--source", "db").output)
    api = client.get("/api/sources/db/retention", headers=AUTH).json()
    api.pop("seconds"), plan.pop("seconds")
    assert api == plan
    assert {b["id"] for b in api["backups"]} == set(web_repo.db_backups)
    assert all(b["rule"] for b in api["backups"])  # every verdict says why


def test_api_points_drills_audit(client, web_repo):
    points = client.get("/api/points", headers=AUTH).json()
    assert points == json.loads(run_cli(web_repo, "--json", "list", "--points").output)
    assert points[-1]["id"] == web_repo.point
    drills = client.get("/api/drills", headers=AUTH).json()
    assert len(drills) == 1 and drills[0]["ok"] and drills[0]["restore_seconds"] == web_repo.drill_rto
    failed = client.get("/api/audit?op=backup&result=failed", headers=AUTH).json()
    assert [r["source"] for r in failed] == ["down"] and failed[0]["error"] == web_repo.failure_error
    cli_audit = json.loads(run_cli(web_repo, "--json", "audit", "--op", "backup", "--source", "down").output)
    assert client.get("/api/audit?op=backup&source=down", headers=AUTH).json() == cli_audit
    verify = client.get("/api/verify", headers=AUTH).json()
    assert len(verify) == 1 and verify[0]["result"] == "succeeded" and verify[0]["backups"] == 2


def test_pages_render_states_numbers_and_no_secret(client, web_repo):
    overview = client.get("/", headers=AUTH)
    assert overview.status_code == 200
    html = overview.text
    assert 'data-state="failing"' in html and 'data-state="ok"' in html
    assert web_repo.point in html and "holds db but not down" in html  # "down" never backed up
    assert "passed" in html and "(nightly)" in html  # last drill, next scheduled run
    for path in PAGES + APIS:
        r = client.get(path, headers=AUTH)
        assert r.status_code == 200, path
        for secret in web_repo.secrets:
            assert secret not in r.text, f"a secret is in {path}"
    source = client.get("/sources/db", headers=AUTH).text
    for backup in web_repo.db_backups:
        assert backup in source
    assert "keep" in source  # the retention verdicts
    assert client.get("/sources/nope", headers=AUTH).status_code == 404


def test_every_page_and_api_answers_401_without_the_token(client):
    for path in PAGES + APIS:
        r = client.get(path)
        assert r.status_code == 401, path
        r = client.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, path
        assert WEB_TOKEN not in r.text
    assert client.get("/static/uplot/LICENSE").status_code == 200  # the public assets only


def test_login_form_sets_a_strict_httponly_cookie(web_repo):
    with TestClient(create_app(web_repo.ctx, token=WEB_TOKEN, cache_seconds=0)) as c:
        bad = c.post("/login", data={"token": "nope", "next": "/drills"}, follow_redirects=False)
        assert bad.status_code == 401 and COOKIE not in bad.cookies
        ok = c.post("/login", data={"token": WEB_TOKEN, "next": "//evil.example/"}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert WEB_TOKEN not in ok.headers["set-cookie"]
        assert c.get("/drills").status_code == 200  # the cookie now opens every page
        assert c.get("/api/status").status_code == 200


def test_refuses_a_non_loopback_bind_without_a_token(web_repo):
    with pytest.raises(ConfigError, match="only loopback"):
        WebServer(web_repo.ctx, "0.0.0.0:0", None)
    result = run_cli(web_repo, "web", "--listen", "0.0.0.0:0", "--token-env", "POSTERITY_TEST_UNSET_TOKEN")
    assert result.exit_code != 0 and "not set" in str(result.exception)


def test_real_socket_with_token_on_all_interfaces_needs_it(web_repo):
    server = WebServer(web_repo.ctx, "0.0.0.0:0", WEB_TOKEN, cache_seconds=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.address[1]}"
        r = _wait_get(base + "/api/status")
        assert r.status_code == 401
        r = httpx.get(base + "/api/status", headers=AUTH, timeout=10)
        assert r.status_code == 200 and {s["source"] for s in r.json()["sources"]} == {"db", "down"}
        assert "content-security-policy" in r.headers
    finally:
        server.stop()


def _wait_get(url: str, **kw) -> httpx.Response:
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.get(url, timeout=10, **kw)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_daemon_serves_the_dashboard_beside_metrics_when_web_is_configured(web_repo):
    from tests.support.ops import make_context

    from posterity.scheduler.daemon import Daemon

    text = web_repo.config_text.replace("[web]\n", '[web]\nlisten = "127.0.0.1:0"\n')
    text += '[daemon]\nmetrics_listen = "127.0.0.1:0"\ncatch_up = false\n'
    daemon = Daemon(make_context(text))
    daemon.start()
    try:
        assert daemon.web is not None and daemon.metrics_address is not None
        base = f"http://127.0.0.1:{daemon.web.address[1]}"
        assert _wait_get(base + "/api/status").status_code == 401
        r = _wait_get(base + "/api/status", headers=AUTH)
        assert r.status_code == 200 and {s["source"]: s["state"] for s in r.json()["sources"]} == {
            "db": "ok", "down": "failing"}
        assert _wait_get(f"http://127.0.0.1:{daemon.metrics_address[1]}/healthz").status_code == 200
    finally:
        daemon.shutdown()
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/api/status", timeout=2)  # stopped with the daemon


def test_cache_serves_stale_answers_while_one_refresh_runs():
    import threading

    from posterity.web.cache import TTLCache

    now = [0.0]
    cache = TTLCache(30, stale_grace=300, clock=lambda: now[0])
    calls: list[int] = []
    release = threading.Event()

    def compute():
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    assert cache.get("k", compute) == 1
    now[0] = 10
    assert cache.get("k", compute) == 1 and len(calls) == 1  # fresh: no read
    now[0] = 40
    assert cache.get("k", compute) == 1  # stale: the old answer at once ...
    assert cache.get("k", compute) == 1  # ... and only one refresh in flight
    release.set()
    for _ in range(100):
        if cache.get("k", compute) == 2:
            break
        threading.Event().wait(0.02)
    assert cache.get("k", compute) == 2 and len(calls) == 2
    now[0] = 40 + 30 + 300 + 1  # beyond the grace: the request waits for a new read
    assert cache.get("k", compute) == 3


def test_daemon_refuses_a_non_loopback_dashboard_without_a_token(web_repo):
    from tests.support.ops import make_context

    from posterity.scheduler.daemon import Daemon

    text = web_repo.config_text.replace(f'token = "{WEB_TOKEN}"\n', 'listen = "0.0.0.0:0"\n')
    text += '[daemon]\nmetrics_listen = ""\ncatch_up = false\n'
    assert WEB_TOKEN not in text
    daemon = Daemon(make_context(text))
    with pytest.raises(ConfigError, match="only loopback"):
        daemon.start()
    daemon.shutdown()
