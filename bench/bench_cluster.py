"""A benchmark PostgreSQL cluster that outlives one benchmark run.

    .venv/bin/python bench/bench_cluster.py --work /var/tmp/posterity-bench-i16 --shapes mixed,dominant,many

Starts a throwaway cluster under ``--work/pg``, builds the benchmark databases that
``bench/pg_backup_restore.py`` uses (once: seeding the 2.37 GB ``mixed`` database takes
minutes), writes ``--work/cluster.json`` (port, bin dir) and waits until interrupted
(SIGINT/SIGTERM), then stops and removes the cluster. ``pg_backup_restore.py --cluster
--work/cluster.json`` and ``logical_cpu.py`` then reuse it instead of seeding again.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from posterity.pgcluster import TempCluster  # noqa: E402

CONF = {"max_wal_size": "4GB", "shared_buffers": "512MB"}


def dbname_for(shape: str, scale: int) -> str:
    return "bench" if shape == "mixed" else f"bench_{shape}_{scale}"


def seed(cluster, shape: str, scale: int, posters: int = 300_000, tables: int = 32) -> str:
    """Build the database of ``shape`` unless it exists; returns its name."""
    dbname = dbname_for(shape, scale)
    if cluster.psql(f"select count(*) from pg_database where datname='{dbname}'").strip() == "1":
        return dbname
    print(f"building the benchmark database {dbname} (once)…", flush=True)
    t0 = time.monotonic()
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres", "PATH": "/usr/bin:/bin"}
    cluster.psql(f"create database {dbname}")
    subprocess.run([str(cluster.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), dbname], check=True, env=env)
    if shape == "mixed":
        from posterity.demo.sample_data import load_sample

        load_sample(cluster.dsn(dbname), posters=posters)
    elif shape == "many":
        for i in range(tables):
            cluster.psql(f"create table t{i:03d} as select * from pgbench_accounts where aid % {tables} = {i}",
                         dbname=dbname)
            cluster.psql(f"alter table t{i:03d} add primary key (aid)", dbname=dbname)
        cluster.psql("drop table pgbench_accounts", dbname=dbname)
    cluster.psql("vacuum analyze", dbname=dbname)
    size = int(cluster.psql(f"select pg_database_size('{dbname}')", dbname=dbname))
    print(f"{dbname}: {size / 1e9:.2f} GB, built in {time.monotonic() - t0:.0f} s", flush=True)
    return dbname


class External:
    """The parts of TempCluster the benchmarks use, for a cluster another process runs."""

    host = "127.0.0.1"

    def __init__(self, info: Path) -> None:
        d = json.loads(info.read_text())
        self.port = int(d["port"])
        self.bin_dir = Path(d["bin_dir"])
        self.postmaster_pid = int(d["postmaster_pid"])

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-q", "-h", self.host,
             "-p", str(self.port), "-U", "postgres", "-d", dbname],
            input=sql, capture_output=True, text=True, check=True).stdout

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/var/tmp/posterity-bench")
    ap.add_argument("--shapes", default="mixed,dominant,many")
    ap.add_argument("--scale", type=int, default=100, help="pgbench scale of the mixed database")
    ap.add_argument("--small-scale", type=int, default=50, help="pgbench scale of dominant/many")
    ap.add_argument("--posters", type=int, default=300_000)
    ap.add_argument("--tables", type=int, default=32)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    cluster = TempCluster(base_dir=work / "pg", port=None, conf=CONF)
    cluster.start()
    pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    info = work / "cluster.json"
    try:
        for shape in filter(None, args.shapes.split(",")):
            seed(cluster, shape, args.scale if shape == "mixed" else args.small_scale, args.posters, args.tables)
        info.write_text(json.dumps({"port": cluster.port, "bin_dir": str(cluster.bin_dir), "postmaster_pid": pid}))
        print(f"ready: {info}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    finally:
        info.unlink(missing_ok=True)
        cluster.cleanup()


if __name__ == "__main__":
    main()
