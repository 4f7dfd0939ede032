"""`posterity doctor` for the repository, Meilisearch and files sources, and the archiving
alerts' arithmetic (fill rate, time left) on samples of known numbers.

Meilisearch runs as the in-repo test server (it keeps keys with actions, as Meilisearch does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.meili import MeiliTestServer
from tests.support.install import installed_posterity

from posterity.config import load_config
from posterity.operations.context import Context
from posterity.operations.doctor import EXIT_DOCTOR, doctor
from posterity.pipeline import generate_identity
from posterity.sources.postgres import archiving

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def work() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="posterity-doctor-src-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _context(work: Path, sources: str, sub: str = "a") -> Context:
    work = work / sub
    work.mkdir(mode=0o755)
    key = work / "key.txt"
    recipient = generate_identity(key)
    config = work / "posterity.toml"
    config.write_text(f'[repository]\nurl = "file://{work / "repo"}"\n\n'
                      f'[encryption]\nrecipients = ["{recipient}"]\nidentity_file = "{key}"\n\n'
                      f'[general]\nstate_dir = "{work / "state"}"\n\n{sources}')
    ctx = Context(load_config(str(config))[0], config)
    ctx.repo.init([recipient])
    return ctx


def _by_name(report) -> dict[str, object]:
    return {f"{c.source or '-'}/{c.name}": c for c in report.checks}


@pytest.fixture
def meili(tmp_path: Path) -> Iterator[MeiliTestServer]:
    server = MeiliTestServer(master_key="doctorMasterKey", data_dir=tmp_path / "data.ms",
                             dump_dir=tmp_path / "dumps", snapshot_dir=tmp_path / "snapshots")
    with server:
        yield server


def test_doctor_checks_meilisearch_key_actions_and_folders(work: Path, meili: MeiliTestServer) -> None:
    def source(key: str, modes: str, snapshot_dir: Path | str | None = None) -> str:
        snap = f'snapshot_dir = "{snapshot_dir}"\n' if snapshot_dir else ""
        return (f'[sources.search]\nkind = "meilisearch"\nurl = "{meili.url}"\napi_key = "{key}"\n'
                f"modes = {modes}\n{snap}")

    ctx = _context(work, source("doctorMasterKey", '["snapshot", "export"]', meili.snapshot_dir))
    checks = _by_name(doctor(ctx))
    for name in ("meilisearch reachable", "meilisearch version", "api key", "snapshot folder"):
        assert checks[f"search/{name}"].status == "ok", checks  # type: ignore[attr-defined]
    # The search-only key cannot export: named, with a hint.
    ctx = _context(work, source(meili.search_key, '["export"]'), "b")
    report = doctor(ctx, "search")
    key = _by_name(report)["search/api key"]
    assert report.exit_code == EXIT_DOCTOR and key.status == "fail", key  # type: ignore[attr-defined]
    assert "indexes.get" in key.detail and "stats.get" in key.detail  # type: ignore[attr-defined]
    # A snapshot folder that is not on this host.
    ctx = _context(work, source("doctorMasterKey", '["snapshot"]', work / "no-such-folder"), "c")
    folder = _by_name(doctor(ctx, "search"))["search/snapshot folder"]
    assert folder.status == "fail" and "does not exist" in folder.detail  # type: ignore[attr-defined]


def test_doctor_checks_the_repository_and_names_a_missing_one(work: Path) -> None:
    ctx = _context(work, "")
    checks = _by_name(doctor(ctx))
    assert checks["-/repository reachable"].status == "ok"  # type: ignore[attr-defined]
    assert checks["-/repository writable"].status == "ok"  # type: ignore[attr-defined]
    skew = checks["-/clock skew"]
    assert skew.status == "ok" and "against the store" in skew.detail  # type: ignore[attr-defined]
    assert not list((work / "a" / "repo" / "probes").glob("*"))  # the probe was removed
    shutil.rmtree(work / "a" / "repo")
    report = doctor(ctx)
    reach = _by_name(report)["-/repository reachable"]
    assert report.exit_code == EXIT_DOCTOR and reach.status == "fail"  # type: ignore[attr-defined]
    assert "No Posterity repository" in reach.detail  # type: ignore[attr-defined]


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run doctor as another user")
def test_doctor_names_files_paths_the_user_cannot_read(work: Path) -> None:
    secret = work / "secret"
    secret.mkdir(mode=0o700)
    (secret / "a.conf").write_text("x")
    _context(work, f'[sources.config]\nkind = "files"\npaths = ["{secret}", "{work / "missing"}"]\n')
    home = work / "a"
    subprocess.run(["chown", "-R", "postgres", str(home / "repo"), str(home / "posterity.toml")], check=True)
    proc = subprocess.run(["runuser", "-u", "postgres", "--", str(installed_posterity()), "-c",
                           str(home / "posterity.toml"), "--json", "doctor", "--source", "config"],
                          capture_output=True, text=True, check=False, cwd="/", timeout=120)
    assert proc.returncode == EXIT_DOCTOR, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks[f"path {secret}"]["status"] == "fail" and "cannot read" in checks[f"path {secret}"]["detail"]
    assert checks[f"path {work / 'missing'}"]["status"] == "fail"
    # Unknown source: a usage error, not a failed check.
    bad = subprocess.run([str(installed_posterity()), "-c", str(home / "posterity.toml"), "doctor", "--source",
                          "nope"], capture_output=True, text=True, check=False, timeout=60)
    assert bad.returncode == 2, bad.stderr


CFG = SimpleNamespace(archive_alert_after="15m", ready_alert=64, wal_disk_alert=80, wal_disk_alert_within="1h")
GIB = 1 << 30


def _sample(t: float, free: int, total: int = 100 * GIB, **kw) -> archiving.ArchiveSample:
    return archiving.ArchiveSample(time=t, wal_disk_total=total, wal_disk_free=free, **kw)


def test_disk_alert_comes_before_the_threshold_with_the_time_left() -> None:
    # 30 GiB free (70 % used), filling 10 MiB/s: 80 % in ~17 min (< 1 h), full in ~51 min.
    prev, now = _sample(0, 30 * GIB + 600 * 10 * (1 << 20)), _sample(600, 30 * GIB)
    alerts = archiving.evaluate(now, prev, CFG)
    assert [a.kind for a in alerts] == ["disk"]
    assert "70% full" in alerts[0].message and "full in 51 min" in alerts[0].message
    # Not filling: 70 % is below the threshold and no alert.
    assert archiving.evaluate(_sample(600, 30 * GIB), _sample(0, 30 * GIB), CFG) == []
    # Past the threshold: an alert even without a rate.
    assert [a.kind for a in archiving.evaluate(_sample(0, 10 * GIB), None, CFG)] == ["disk"]


def test_failing_alert_waits_for_the_threshold_and_remembers_when_it_began() -> None:
    first = archiving.ArchiveSample(time=1000, failing=True, last_failed_time=990, last_archived_time=400,
                                    failed_count=3, last_failed_wal="000000010000000000000009")
    archiving.carry(first, None)
    assert first.failing_since == 400  # no later than the last success
    later = archiving.ArchiveSample(time=1500, failing=True, last_failed_time=1490, last_archived_time=400,
                                    failed_count=9)
    archiving.carry(later, first)
    assert later.failing_since == 400
    assert [a.kind for a in archiving.evaluate(later, first, CFG)] == ["failing"]  # 1100 s ≥ 15 min
    quick = archiving.ArchiveSample(time=1000, failing=True, last_failed_time=990, last_archived_time=900)
    archiving.carry(quick, None)
    assert archiving.evaluate(quick, None, CFG) == []  # 100 s < 15 min
    # Nothing counted as failed, but a segment has waited 20 min: failing all the same.
    stuck = archiving.ArchiveSample(time=5000, oldest_ready=3800, ready=3)
    alerts = archiving.evaluate(stuck, None, CFG)
    assert [a.kind for a in alerts] == ["failing"] and "20 min" in alerts[0].message


def test_doctor_names_an_unreachable_database_and_goes_on(work: Path) -> None:
    from posterity.pgcluster import free_port

    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    ctx = _context(work, f'[sources.db]\nkind = "postgres"\ndsn = "{dsn}"\n\n'
                         f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{dsn}"\n')
    report = doctor(ctx)
    checks = _by_name(report)
    assert report.exit_code == EXIT_DOCTOR
    for source in ("db", "pitr"):
        reach = checks[f"{source}/postgres reachable"]
        assert reach.status == "fail" and reach.hint, reach  # type: ignore[attr-defined]
    assert checks["-/repository writable"].status == "ok"  # type: ignore[attr-defined]
