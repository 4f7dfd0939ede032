"""A backup and restore through the CLI behave the same with the AWS_* variables that hosts
running other S3 tools set (issue #18, item 2): the store is built from [repository] alone."""

from __future__ import annotations

from tests.reliability.harness import Setup, unique
from tests.test_s3_client import HOSTILE_ENV

from posterity.demo import fingerprint


def test_backup_verify_and_restore_ignore_the_hosts_aws_variables(proxy_setup: Setup, module_db, r2_proxy):
    s = proxy_setup
    env = {k: v for k, v in HOSTILE_ENV.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    r = s.run("backup", "db", "--json", env=env)
    assert r.code == 0, r  # was: exit 1, "unexpected GenericError … not a valid checksum algorithm"
    backup_id = r.json()["backups"][0]["id"]
    r = s.run("verify", backup_id, "--read-data", env=env)
    assert r.code == 0 and "no problems found" in r.out, r
    target = unique("envrestore")
    r = s.run("restore", "db", backup_id, "--to-database", target, env=env)
    assert r.code == 0, r
    try:
        assert fingerprint(module_db.cluster.dsn(target)) == module_db.fingerprint
    finally:
        module_db.cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    assert r2_proxy.violations == []
    for req in r2_proxy.requests:
        assert "x-amz-security-token" not in req.headers and "x-amz-request-payer" not in req.headers
        assert not any(h.startswith("x-amz-checksum") for h in req.headers)
