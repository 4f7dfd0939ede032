"""A repository a dashboard can show: real backups (PostgreSQL into SeaweedFS S3), a failed
backup, a restore point, a passed drill and a verify run — built once per test module.

The DSN carries a password and the store a secret key (the test cluster trusts loopback, so
the password is never checked): tests assert neither ever reaches a page or an API answer.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.ops import make_context, make_keys, s3_repo_extra

from posterity.operations.context import Context

DB_PASSWORD = "pw-" + uuid.uuid4().hex  # must never be rendered
WEB_TOKEN = "tok-" + uuid.uuid4().hex


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WebRepo:
    ctx: Context
    config_text: str
    db_backups: list[str]
    failure_error: str
    point: str
    drill_rto: float
    secrets: tuple[str, ...]


def build_web_repo(root: Path, pg_cluster, s3_server, posters: int = 60) -> tuple[WebRepo, str]:
    """Returns the repository and the name of the database it backs up (drop it afterwards)."""
    import pytest

    from posterity.demo import load_sample
    from posterity.errors import SourceError
    from posterity.operations.backup import backup_source
    from posterity.operations.drill import drill
    from posterity.operations.init import init_repository
    from posterity.operations.points import write_point
    from posterity.operations.verify import verify

    dbname = f"web_{uuid.uuid4().hex[:10]}"
    pg_cluster.psql(f'CREATE DATABASE "{dbname}"')
    plain_dsn = pg_cluster.dsn(dbname)
    load_sample(plain_dsn, posters=posters)
    dsn = plain_dsn.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    assert DB_PASSWORD in dsn
    bucket = f"web-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    root.mkdir(parents=True, exist_ok=True)
    recipient, identity = make_keys(root)
    secret_key = s3_server.store_kwargs(None)["secret_access_key"]
    text = "\n".join([
        "[repository]", f'url = "s3://{bucket}/prod"', s3_repo_extra(s3_server),
        "[encryption]", f'recipients = ["{recipient}"]', f'identity_file = "{identity}"',
        "[general]", f'state_dir = "{root / "state"}"', f'staging_dir = "{root / "staging"}"', 'max_age = "2d"',
        "[sources.db]", 'kind = "postgres"', f'dsn = "{dsn}"', "globals = false", 'max_age = "26h"',
        'drill = "scratch-db"',
        "[[schedule]]", 'name = "nightly"', 'cron = "0 2 * * *"', 'sources = ["db"]',
        "[web]", f'token = "{WEB_TOKEN}"', "cache_seconds = 0",
    ]) + "\n"
    # The restore point is written while "db" is the only source; "down" (its server is not
    # there) is added afterwards, so its backup fails and the newest point lacks it.
    first_ctx = make_context(text)
    init_repository(first_ctx)
    first = backup_source(first_ctx, "db", tags=["daily"])
    pg_cluster.psql("INSERT INTO posters (title, abstract) SELECT 'more ' || g, repeat('x', 2000) "
                    "FROM generate_series(1, 200) g", dbname)
    second = backup_source(first_ctx, "db", tags=["daily"])
    write_point(first_ctx, [second.manifest], tags=["daily"])
    text += "\n".join([
        "[sources.down]", 'kind = "postgres"', f'dsn = "postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{closed_port()}/x"',
        "globals = false",
    ]) + "\n"
    ctx = make_context(text)
    with pytest.raises(SourceError) as failed:
        backup_source(ctx, "down")
    report = drill(ctx, "db")
    verify(ctx)
    assert report.ok and report.restore_seconds is not None
    from posterity.operations.points import list_points

    repo = WebRepo(ctx, text, [first.manifest.id, second.manifest.id], str(failed.value),
                   list_points(ctx.repo)[-1].id, report.restore_seconds, (DB_PASSWORD, secret_key, WEB_TOKEN))
    return repo, dbname

