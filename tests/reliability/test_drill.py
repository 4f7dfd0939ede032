"""`posterity drill`: restore into a throwaway target, check, report, clean up — and fail
loudly (non-zero, report stored, nothing left behind) when anything is wrong."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

from tests.reliability.harness import Setup

CHECKS = """
[[sources.db.checks]]
sql = "select count(*) from posters"
min = 1
description = "posters survived"
"""


def stored_report(s: Setup, key: str) -> dict:
    return json.loads(s.context().repo.store.get_bytes(key))


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_drill_on_a_temporary_cluster_checks_reports_and_cleans_up(local_setup: Setup, module_db):
    s = local_setup
    s.source_extra = CHECKS
    s.write_config()
    backup_id = s.backup()
    r = s.run("drill", "--json")
    assert r.code == 0, r
    (report,) = r.json()["drills"]
    assert report["ok"] and report["backup"] == backup_id and report["error"] is None
    assert report["restore_seconds"] > 0 and report["bytes"] > 500_000
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["row counts"]["ok"] and checks["row counts"]["value"] == sum(
        n for t, n in _counts(module_db.dsn).items()
    )
    assert checks["posters survived"] == {
        "name": "posters survived",
        "ok": True,
        "detail": "300 within range",
        "value": 300.0,
    }
    assert report["cleanup"] == "temporary cluster stopped and removed"
    folder = Path(re.search(r"temporary cluster in (\S+) ", report["target"]).group(1))
    port = int(re.search(r"on port (\d+)", report["target"]).group(1))
    assert not folder.exists() and not port_open(port)
    assert stored_report(s, report["key"])["restore_seconds"] == report["restore_seconds"]
    audits = [a for a in _audits(s) if a["operation"] == "drill"]
    assert audits[-1]["result"] == "succeeded" and audits[-1]["report"] == report["key"]
    # `posterity status` shows the last drill and its RTO.
    st = s.run("status", "--json")
    (db,) = [x for x in st.json()["sources"] if x["source"] == report["source"]]
    assert db["last_drill"]["ok"] is True and db["last_drill"]["id"] == report["id"]
    assert db["last_drill"]["restore_seconds"] == report["restore_seconds"]


def test_failing_check_fails_the_drill_and_still_cleans_up(local_setup: Setup, pg_cluster):
    s = local_setup
    s.source_extra = (
        'drill = "scratch-db"\n'
        + CHECKS
        + '\n[[sources.db.checks]]\nsql = "select count(*) from authors"\nmax = 3\n'
    )
    s.write_config()
    s.backup()
    r = s.run("drill")
    assert r.code == 10, r
    assert (
        "error: Drill of db (backup " in r.err
        and "1 check(s) failed: select count(*) from authors: 150 above the maximum 3" in r.err
    ), r
    assert (
        "ok  posters survived: 300 within range" in r.out
        and "BAD select count(*) from authors" in r.out
    ), r
    key = re.search(r"Report: (drills/db/\S+\.json)\.", r.err).group(1)
    report = stored_report(s, key)
    assert report["ok"] is False and report["cleanup"].startswith(
        "scratch database posterity_drill_"
    )
    assert (
        pg_cluster.psql(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'posterity_drill_%'"
        ).strip()
        == "0"
    )
    assert [a for a in _audits(s) if a["operation"] == "drill"][-1]["result"] == "failed"


def test_drill_of_a_damaged_backup_names_it_and_leaves_nothing(local_setup: Setup, pg_cluster):
    s = local_setup
    s.source_extra = 'drill = "scratch-db"'
    s.write_config()
    s.backup()
    repo = Path(s.repo_url.removeprefix("file://"))
    (dump,) = repo.glob("backups/db/*/*.pgdump.zst.age")
    data = bytearray(dump.read_bytes())
    data[-100] ^= 0xFF
    dump.write_bytes(bytes(data))
    r = s.run("drill")
    assert r.code == 6, r
    key = str(dump.relative_to(repo))
    assert f"{key} does not match its manifest" in r.err and "Report: drills/db/" in r.err, r
    assert (
        pg_cluster.psql(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'posterity_drill_%'"
        ).strip()
        == "0"
    )


def test_drill_and_verify_of_a_restore_point(local_setup: Setup):
    s = local_setup
    r = s.run("backup", "--json")  # all sources: writes a restore point
    assert r.code == 0, r
    point = r.json()["point"]
    r = s.run("drill", "--point", point["id"], "--json")
    assert r.code == 0 and r.json()["drills"][0]["backup"] == point["backups"][0]["backup"], r
    r = s.run("verify", "--json")
    assert r.code == 0 and r.json()["points"] == 1, r
    # The point's backup disappears (say, deleted by hand): verify names the point.
    store = s.context().repo.store
    store.delete([point["backups"][0]["manifest"]])
    r = s.run("verify")
    assert r.code == 6, r
    assert (
        f"BAD point: The restore point points/{point['id']}.json names backups that do not exist: db/{point['backups'][0]['backup']}"
        in r.err
    ), r


def _audits(s: Setup) -> list[dict]:
    store = s.context().repo.store
    return [json.loads(store.get_bytes(k)) for k in s.keys("audit/")]


def _counts(dsn: str) -> dict[str, int]:
    from posterity.demo import table_row_counts

    return table_row_counts(dsn)
