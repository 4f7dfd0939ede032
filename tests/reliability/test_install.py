"""Posterity as users install it: ``scripts/install`` (idempotent, runnable by every user) and
the built wheel/sdist installed with plain ``pip`` into a fresh venv, then a real backup and
restore with that install."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from tests.support.install import INSTALL, ROOT, installed_prefix

AS_ROOT = os.geteuid() == 0


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def test_install_runs_again_in_place_and_every_user_can_run_it() -> None:
    prefix = installed_prefix()
    proc = subprocess.run([str(INSTALL), "--prefix", str(prefix), "--no-link"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"in {prefix}" in proc.stdout
    for cmd in ("posterity", "posterity-wal"):
        assert (prefix / "bin" / cmd).exists()
    python = (prefix / "venv" / "bin" / "python").resolve()
    assert not str(python).startswith(("/root", str(Path.home()))), python
    unreadable = [p for p in prefix.rglob("*") if not p.is_symlink()
                  and not p.stat().st_mode & stat.S_IROTH]
    assert not unreadable, unreadable[:5]
    if AS_ROOT:
        ran = subprocess.run(["runuser", "-u", "postgres", "--", str(prefix / "bin" / "posterity"), "--version"],
                             capture_output=True, text=True, check=False, cwd="/")
        assert ran.returncode == 0 and "posterity" in ran.stdout, ran.stderr
    bad = subprocess.run([str(INSTALL), "--bogus"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


def test_built_wheel_installs_with_plain_pip_and_backs_up_and_restores(sample_db, tmp_path: Path) -> None:
    from posterity.pipeline import generate_identity

    dist = tmp_path / "dist"
    built = subprocess.run([*_uv(), "build", "--quiet", "--out-dir", str(dist), str(ROOT)], capture_output=True,
                           text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("posterity-*.whl"))
    sdist = next(dist.glob("posterity-*.tar.gz"))
    venv = tmp_path / "venv"
    made = subprocess.run([*_uv(), "venv", "--quiet", "--seed", "--python", "/usr/bin/python3", str(venv)],
                          capture_output=True, text=True, timeout=120, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a venv on /usr/bin/python3: {made.stderr.strip()[:200]}")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run([*pip, str(wheel)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    posterity = venv / "bin" / "posterity"
    key = tmp_path / "key.txt"
    recipient = generate_identity(key)
    config = tmp_path / "posterity.toml"
    config.write_text(f'[repository]\nurl = "file://{tmp_path / "repo"}"\n\n'
                      f'[encryption]\nrecipients = ["{recipient}"]\nidentity_file = "{key}"\n\n'
                      f'[general]\nstate_dir = "{tmp_path / "state"}"\n\n'
                      f'[sources.db]\nkind = "postgres"\ndsn = "{sample_db.dsn}"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("POSTERITY_CONFIG", "VIRTUAL_ENV", "PYTHONPATH")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(posterity), "-c", str(config), *args], capture_output=True, text=True,
                              env=env, timeout=300, check=False, cwd=str(tmp_path))

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import posterity; print(posterity.__file__)"],
                           capture_output=True, text=True, env=env, check=True, cwd=str(tmp_path)).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    for args in (("init",), ("backup", "db")):
        p = run(*args)
        assert p.returncode == 0, p.stdout + p.stderr
    target = f"restored_{os.getpid()}"
    p = run("restore", "db", "latest", "--to-database", target)
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        count = "select count(*) from posters"
        assert sample_db.cluster.psql(count, dbname=target) == sample_db.cluster.psql(count, dbname=sample_db.name)
        assert int(sample_db.cluster.psql(count, dbname=target)) == sample_db.posters
    finally:
        sample_db.cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    # The sdist builds and installs too (its build backend from the index, like any sdist).
    proc = subprocess.run([*pip, "--no-deps", "--force-reinstall", str(sdist)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run("--version").returncode == 0
