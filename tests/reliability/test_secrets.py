"""Secrets never leak: not into messages, logs (-vv), manifests, audit records, drill reports,
the local state folder, or the process list.

The database password is written in the config's dsn (the role really needs it: this
test adds a scram-sha-256 rule for it to pg_hba.conf), the S3 secret key comes from the
environment through ${VAR}. Backup, list, show, verify, restore and drill run with debug
logging; failing runs (a wrong password, a wrong secret key) too. `ps -eo args` is sampled
while a backup's pg_dump is alive. None of the secrets may appear anywhere.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote

import psycopg
from tests.reliability.harness import S3_CREDENTIALS, Run, Setup, s3_env, unique
from tests.reliability.test_kill import pg_dump_waits, wait_for


def forms(secret: str) -> list[str]:
    return sorted({secret, quote(secret, safe=""), secret[:12]})


def test_secrets_appear_nowhere(tmp_path, module_db, pg_cluster, s3_server, s3_bucket):
    role = unique("leaky")
    password = "pw-" + secrets.token_hex(12) + "/+x"
    wrong_password = "pw-wrong-" + secrets.token_hex(12)
    wrong_s3 = "s3-wrong-" + secrets.token_hex(12)
    pg_cluster.psql(
        f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}';GRANT pg_read_all_data TO {role};"
    )
    hba = Path(pg_cluster.data_dir) / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
    pg_cluster.psql("SELECT pg_reload_conf()")
    runs: list[Run] = []
    ps_samples: list[str] = []
    try:
        dsn = f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{pg_cluster.port}/{module_db.name}"
        s = Setup(
            tmp_path / "env",
            f"s3://{s3_bucket}/repo",
            dsn,
            endpoint=s3_server.endpoint,
            env=s3_env(s3_server),
            repo_extra=S3_CREDENTIALS,
            source_extra='drill = "scratch-db"',
        )

        def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Run:
            r = s.run("-vv", *args, env=env)
            assert r.code == code, r
            runs.append(r)
            return r

        run("init")
        # A backup whose pg_dump is held on a lock, so `ps` surely sees it.
        with psycopg.connect(module_db.dsn) as blocker:
            blocker.execute("lock table posters in access exclusive mode")
            proc = s.popen("-vv", "backup", "db")
            wait_for(lambda: pg_dump_waits(module_db.dsn), what="pg_dump to start")
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    ps_samples.append(
                        subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
                    )
                    stop.wait(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            wait_for(lambda: len(ps_samples) >= 5, what="ps samples")
            blocker.rollback()
        out, err = proc.communicate(timeout=120)
        stop.set()
        sampler.join()
        assert proc.returncode == 0, err
        runs.append(Run(["backup"], 0, out, err))
        assert any("pg_dump" in sample for sample in ps_samples), "the sampler never saw pg_dump"

        run("list")
        run("show", "latest", "--source", "db")
        run("verify", "--read-data")
        target = unique("restored")
        run("restore", "db", "latest", "--to-database", target, "--no-owner")
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        run("drill")

        # Failing runs must not echo what they were given either.
        s.dsn = dsn.replace(quote(password, safe=""), wrong_password)
        s.write_config()
        r = run("backup", "db", code=5)
        assert "refused the login (authentication failed)" in r.err, r
        s.dsn = dsn
        s.write_config()
        r = run("list", code=4, env={"TEST_S3_SECRET": wrong_s3})
        assert "refused the credentials" in r.err, r

        # Everything the tool wrote: the repository, and the local state folder.
        ctx = s.context()
        stored = {
            k: ctx.repo.store.get_bytes(k).decode(errors="replace")
            for k in s.keys()  # noqa: SIM118
            if not k.endswith(".zst.age")
        }
        assert any(k.startswith("audit/") for k in stored) and any(
            k.endswith("manifest.json") for k in stored
        )
        assert any(k.startswith("drills/") for k in stored)
        local = {
            str(p): p.read_text(errors="replace")
            for p in (s.root / "state").rglob("*")
            if p.is_file()
        }
        assert any(p.endswith("audit.jsonl") for p in local)
    finally:
        hba.write_text(original)
        pg_cluster.psql(f"SELECT pg_reload_conf(); DROP ROLE IF EXISTS {role};")

    haystacks = {f"output of posterity {' '.join(r.argv)}": r.out + r.err for r in runs}
    haystacks.update({f"stored object {k}": v for k, v in stored.items()})
    haystacks.update({f"local file {k}": v for k, v in local.items()})
    haystacks.update({f"ps sample {i}": v for i, v in enumerate(ps_samples)})
    assert sum(len(v) for v in haystacks.values()) > 10_000  # we did look at something
    for secret in [password, wrong_password, s3_server.secret_key, wrong_s3]:
        for form in forms(secret):
            leaks = [where for where, text in haystacks.items() if form in text]
            assert not leaks, f"{form!r} leaked into: {leaks}"
