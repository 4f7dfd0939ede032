"""`posterity demo --web`: a person opening the page sees the source, the backup, the restore
and the drill of the demo repository."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
from tests.support.webrepo import closed_port


def test_demo_web_serves_the_demo_repository(tmp_path):
    port = closed_port()
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "posterity", "demo", "--posters", "50", "--web",
                                 "--web-listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status = httpx.get(base + "/api/status", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert status.status_code == 200  # loopback, no token configured
        assert [(s["source"], s["state"], s["backups"]) for s in status.json()["sources"]] == [("db", "ok", 1)]
        drills = httpx.get(base + "/api/drills", timeout=10).json()
        assert len(drills) == 1 and drills[0]["ok"]
        ops = {(r["operation"], r["result"]) for r in httpx.get(base + "/api/audit", timeout=10).json()}
        assert {("backup", "succeeded"), ("restore", "succeeded"), ("drill", "succeeded")} <= ops
        page = httpx.get(base + "/", timeout=10).text
        assert 'data-source="db"' in page and "passed" in page
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        m = re.search(r"demo: working in (\S+)", log.read_text())
        if m and "posterity-demo-" in m.group(1):
            shutil.rmtree(m.group(1), ignore_errors=True)
    assert "demo: kept" in log.read_text()
