"""Helpers of the reliability suite: a real posterity.toml, the real CLI in a subprocess.

``Setup`` writes an identity, a config pointing at a repository (SeaweedFS through the
R2 proxy, plain SeaweedFS, or a local folder) and a PostgreSQL database, and runs
``posterity`` as a child process, exactly as a user would: tests judge the exit code and
the text the user sees, and then the repository itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from posterity.config import loads_config
from posterity.operations.context import Context
from posterity.pipeline import generate_identity

CLI = [sys.executable, "-c", "from posterity.cli.main import main; main()"]


@dataclass
class Run:
    argv: list[str]
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"Run({self.argv[-4:]!r}, code={self.code}, out={self.out[-1500:]!r}, err={self.err[-1500:]!r})"


@dataclass
class Setup:
    root: Path
    repo_url: str
    dsn: str
    endpoint: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    source_extra: str = ""
    repo_extra: str = ""
    more_sources: str = ""  # further [sources.NAME] sections, verbatim
    identity: Path = field(init=False)
    config: Path = field(init=False)
    recipient: str = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.identity = self.root / "key.txt"
        self.recipient = generate_identity(self.identity)
        self.config = self.root / "posterity.toml"
        self.write_config()

    def write_config(self, **overrides: str) -> None:
        endpoint = f'endpoint = "{self.endpoint}"\n' if self.endpoint else ""
        text = f"""
[repository]
url = "{self.repo_url}"
{endpoint}region = "us-east-1"
{self.repo_extra}

[encryption]
recipients = ["{self.recipient}"]
identity_file = "{overrides.get("identity_file", self.identity)}"

[general]
state_dir = "{self.root / "state"}"
staging_dir = "{self.root / "staging"}"
lock_ttl = {overrides.get("lock_ttl", 3600)}

[sources.db]
kind = "postgres"
dsn = "{self.dsn}"
{self.source_extra}

{self.more_sources}
"""
        self.config.write_text(text)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Run:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTERITY_"))}
        full_env.update(self.env)
        full_env.update(env or {})
        full_env["POSTERITY_CONFIG"] = str(self.config)
        argv = [*CLI, *args]
        t0 = time.monotonic()
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
        )
        if os.environ.get("POSTERITY_TEST_TIMINGS"):
            print(
                f"[{time.monotonic() - t0:6.2f}s] posterity {' '.join(args)} -> {proc.returncode}"
            )
        return Run(list(args), proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTERITY_"))}
        full_env.update(self.env)
        full_env.update(env or {})
        full_env["POSTERITY_CONFIG"] = str(self.config)
        return subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
        )

    def init(self) -> None:
        """Create the repository in-process (setup, not under test: saves a start-up)."""
        from posterity.operations.init import init_repository

        init_repository(self.context())

    def context(self) -> Context:
        """An in-process view of the same repository (for inspecting and damaging it)."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return Context(loads_config(self.config.read_text(), self.config))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(i.key for i in self.context().repo.store.list(prefix))

    def backup_ids(self) -> list[str]:
        """Committed backups as `posterity list --json` shows them."""
        r = self.run("list", "--json")
        assert r.code == 0, r
        return [b["id"] for b in r.json()]

    def backup(self, *extra: str) -> str:
        r = self.run("backup", "db", "--json", *extra)
        assert r.code == 0, r
        return r.json()["backups"][0]["id"]


def s3_env(server) -> dict[str, str]:
    return {"TEST_S3_KEY_ID": server.access_key, "TEST_S3_SECRET": server.secret_key}


S3_CREDENTIALS = 'access_key_id = "${TEST_S3_KEY_ID}"\nsecret_access_key = "${TEST_S3_SECRET}"'


@dataclass
class SharedDB:
    """A sample database shared by one test module (tests must not change its data)."""

    dsn: str
    name: str
    cluster: Any
    fingerprint: dict


@pytest.fixture(scope="module")
def module_db(pg_cluster) -> Iterator[SharedDB]:
    from posterity.demo import fingerprint, load_sample

    name = unique("shared")
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    try:
        dsn = pg_cluster.dsn(name)
        load_sample(dsn, posters=300)
        yield SharedDB(dsn, name, pg_cluster, fingerprint(dsn))
    finally:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def local_setup(tmp_path, module_db) -> Iterator[Setup]:
    """A repository in a local folder, initialised, backing up the module's sample database."""
    s = Setup(tmp_path / "env", f"file://{tmp_path / 'repo'}", module_db.dsn)
    s.init()
    yield s


@pytest.fixture
def s3_setup(tmp_path, module_db, s3_server, s3_bucket) -> Iterator[Setup]:
    """A repository in SeaweedFS (real S3 API), initialised."""
    s = Setup(
        tmp_path / "env",
        f"s3://{s3_bucket}/repo",
        module_db.dsn,
        endpoint=s3_server.endpoint,
        env=s3_env(s3_server),
        repo_extra=S3_CREDENTIALS,
    )
    s.init()
    yield s


@pytest.fixture
def proxy_setup(tmp_path, module_db, s3_server, s3_bucket, r2_proxy) -> Iterator[Setup]:
    """A repository in SeaweedFS behind the fault-injecting R2 proxy, initialised."""
    s = Setup(
        tmp_path / "env",
        f"s3://{s3_bucket}/repo",
        module_db.dsn,
        endpoint=r2_proxy.endpoint,
        env=s3_env(s3_server),
        repo_extra=S3_CREDENTIALS,
    )
    s.init()
    r2_proxy.reset()
    yield s


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass
class Golden:
    """A local repository holding two committed backups of a sample database, made once."""

    setup: Setup
    repo: Path
    ids: list[str]
    fingerprint: dict
    cluster: Any

    def clone(self, dest: Path) -> Setup:
        """A private copy (repository, key, config) that a test may damage."""
        import shutil

        old_root, old_repo = str(self.setup.root), str(self.repo)
        shutil.copytree(self.setup.root, dest / "env", symlinks=True)
        shutil.copytree(self.repo, dest / "repo", symlinks=True)
        s = object.__new__(Setup)
        s.root, s.repo_url, s.dsn, s.endpoint = (
            dest / "env",
            f"file://{dest / 'repo'}",
            self.setup.dsn,
            None,
        )
        s.env, s.source_extra, s.repo_extra, s.more_sources = {}, self.setup.source_extra, "", ""
        s.identity, s.config, s.recipient = (
            s.root / "key.txt",
            s.root / "posterity.toml",
            self.setup.recipient,
        )
        text = (
            self.setup.config.read_text()
            .replace(old_repo, str(dest / "repo"))
            .replace(old_root, str(s.root))
        )
        s.config.write_text(text)
        return s


@pytest.fixture(scope="module")
def golden(pg_cluster, tmp_path_factory) -> Iterator[Golden]:
    from posterity.demo import fingerprint, load_sample

    base = tmp_path_factory.mktemp("golden")
    name = unique("golden")
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    try:
        dsn = pg_cluster.dsn(name)
        load_sample(dsn, posters=300)
        s = Setup(base / "env", f"file://{base / 'repo'}", dsn)
        s.init()
        ids = [s.backup(), s.backup()]
        yield Golden(s, base / "repo", ids, fingerprint(dsn), pg_cluster)
    finally:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(cluster, name: str) -> bool:
    return cluster.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "1"
