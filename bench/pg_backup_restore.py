"""Benchmark: Posterity's PostgreSQL backup and restore against the floor and the seed.

Run:  scripts/bootstrap && apt-get install -y rclone && .venv/bin/python bench/pg_backup_restore.py --rounds 3

One run, interleaved rounds (the machine is shared and noisy): each round runs every
contender once, in the same order; we report medians and ratios.

Contenders (backup):   floor      pg_dump -Fc -Z0 > /dev/null
                       floor+zstd pg_dump -Fc -Z0 | zstd -T0 -3 > /dev/null
                       seed       pg_dump > db.sql; gzip db.sql; rclone copy (to the same S3 server)
                       posterity  posterity backup (S3 server, zstd 3, age)
Contenders (restore):  seed       gunzip -c db.sql.gz | psql
                       pg_restore pg_restore -j 2 from a local custom-format file
                       posterity  posterity restore --jobs 2 (from the S3 server)

The database: pgbench -i -s 100 plus 300,000 Posters.science rows (~2 GB), built once
in a persistent throwaway cluster under --work (reused by later runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.seaweed import SeaweedS3  # noqa: E402

from posterity.pgcluster import TempCluster  # noqa: E402

PY = sys.executable


def sh(cmd: str, env=None) -> float:
    t = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env)
    return time.monotonic() - t


def run_measured(argv: list[str], env=None) -> tuple[float, int]:
    """Wall seconds and the peak RSS (KiB, VmHWM) of the process itself."""
    t = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with {proc.returncode}")
    return time.monotonic() - t, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=100)
    ap.add_argument("--posters", type=int, default=300_000)
    ap.add_argument("--work", default="/var/tmp/posterity-bench")
    ap.add_argument("--only", default="", help="comma list: backup,restore")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    only = set(filter(None, args.only.split(",")))

    cluster = TempCluster(base_dir=work / "pg", port=None, conf={"max_wal_size": "4GB", "shared_buffers": "512MB"})
    cluster.start()
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    env.pop("AWS_CA_BUNDLE", None)  # rclone refuses a custom CA bundle with its plain-HTTP transport
    bin_dir = cluster.bin_dir
    exists = cluster.psql("select count(*) from pg_database where datname='bench'").strip() == "1"
    if not exists:
        print("building the benchmark database (once)…", flush=True)
        cluster.psql("create database bench")
        sh(f"{bin_dir}/pgbench -i -q -s {args.scale} bench", env)
        from posterity.demo.sample_data import load_sample

        load_sample(cluster.dsn("bench"), posters=args.posters)
        cluster.psql("vacuum analyze", dbname="bench")
    size = int(cluster.psql("select pg_database_size('bench')", dbname="bench"))
    print(f"database size: {size / 1e9:.2f} GB", flush=True)

    s3 = SeaweedS3(work / "s3")
    s3.start()
    s3.create_bucket("bench")
    proj = work / "proj"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir()
    rec = subprocess.run([PY, "-m", "posterity", "key", "generate", "--out", str(proj / "key.txt")],
                         capture_output=True, text=True, check=True).stdout.strip()
    (proj / "posterity.toml").write_text(f"""
[repository]
url = "s3://bench/posterity-{int(time.time())}"
endpoint = "{s3.endpoint}"
region = "{s3.region}"
access_key_id = "{s3.access_key}"
secret_access_key = "{s3.secret_key}"
[encryption]
recipients = ["{rec}"]
identity_file = "{proj / 'key.txt'}"
[general]
state_dir = "{proj / 'state'}"
staging_dir = "{work / 'staging'}"
[sources.db]
kind = "postgres"
dsn = "{cluster.dsn('bench')}"
""")
    (proj / "rclone.conf").write_text(f"""[s3]
type = s3
provider = Other
access_key_id = {s3.access_key}
secret_access_key = {s3.secret_key}
endpoint = {s3.endpoint}
region = {s3.region}
""")
    P = [PY, "-m", "posterity", "--config", str(proj / "posterity.toml")]
    subprocess.run([*P, "init"], check=True)
    # The same pipeline into a local folder: separates Posterity's own cost from the S3
    # server's (which shares these 2 cores in this benchmark, unlike R2).
    local_toml = (proj / "posterity.toml").read_text()
    local_toml = local_toml[: local_toml.index("[repository]")] + f'[repository]\nurl = "file://{work / "repo"}"\n' + \
        local_toml[local_toml.index("[encryption]"):]
    (proj / "local.toml").write_text(local_toml)
    PL = [PY, "-m", "posterity", "--config", str(proj / "local.toml")]
    shutil.rmtree(work / "repo", ignore_errors=True)
    subprocess.run([*PL, "init"], check=True)
    rclone = f"rclone --config {proj / 'rclone.conf'}"
    dumps = work / "dumps"
    dumps.mkdir(exist_ok=True)
    pg_dump = f"{bin_dir}/pg_dump"
    results: dict[str, list[float]] = {}
    rss: list[int] = []
    sizes: dict[str, int] = {}

    def record(name: str, secs: float) -> None:
        results.setdefault(name, []).append(secs)
        print(f"  {name:<28} {secs:8.1f}s", flush=True)

    def drop(db: str) -> None:
        cluster.psql(f"drop database if exists {db} with (force)")

    # A local custom-format dump for the pg_restore baseline.
    if not only or "restore" in only:
        sh(f"{pg_dump} -Fc -Z0 -f {dumps}/bench.pgdump bench", env)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        if not only or "backup" in only:
            record("backup floor (pg_dump -Fc -Z0)", sh(f"{pg_dump} -Fc -Z0 bench > /dev/null", env))
            record("backup floor+zstd", sh(f"{pg_dump} -Fc -Z0 bench | zstd -q -T0 -3 > /dev/null", env))
            t = sh(f"{pg_dump} bench > {dumps}/db.sql && gzip -f {dumps}/db.sql && "
                   f"{rclone} copy {dumps}/db.sql.gz s3:bench/seed-{r}/", env)
            record("backup seed (sql+gzip+rclone)", t)
            sizes["seed gzip"] = (dumps / "db.sql.gz").stat().st_size
            secs, peak = run_measured([*P, "backup", "db"])
            record("backup posterity", secs)
            rss.append(peak)
            secs, peak = run_measured([*PL, "backup", "db"])
            record("backup posterity (local folder)", secs)
            rss.append(peak)
        if not only or "restore" in only:
            if not (dumps / "db.sql.gz").exists():
                sh(f"{pg_dump} bench | gzip > {dumps}/db.sql.gz", env)
            drop("r_seed")
            cluster.psql("create database r_seed")
            record("restore seed (gunzip|psql)", sh(f"gunzip -c {dumps}/db.sql.gz | {bin_dir}/psql -q -X -d r_seed > /dev/null", env))
            drop("r_seed")
            drop("r_pgr")
            cluster.psql("create database r_pgr")
            record("restore pg_restore -j 2", sh(f"{bin_dir}/pg_restore -j 2 -d r_pgr {dumps}/bench.pgdump", env))
            drop("r_pgr")
            drop("r_post")
            secs, peak = run_measured([*P, "restore", "db", "latest", "--to-database", "r_post", "--jobs", "2"])
            record("restore posterity --jobs 2", secs)
            rss.append(peak)
            drop("r_post")

    drill_rto: list[float] = []
    if not only or "drill" in only:
        # The real RTO: `posterity drill` restores the latest backup into a fresh temporary
        # cluster (initdb included), checks row counts, and cleans up.
        for _ in range(max(1, args.rounds // 2)):
            out = subprocess.run([*P, "--json", "drill", "--source", "db"], capture_output=True, text=True, check=True)
            rep = json.loads(out.stdout)["drills"][0]
            drill_rto.append(rep["restore_seconds"])
            print(f"  drill: restore {rep['restore_seconds']:.1f}s, total {rep['total_seconds']:.1f}s, ok={rep['ok']}",
                  flush=True)
    listing = json.loads(subprocess.run([*P, "--json", "list"], capture_output=True, text=True, check=True).stdout)
    if listing:
        sizes["posterity stored"] = listing[-1]["size"]
    med = {k: statistics.median(v) for k, v in results.items()}
    print("\nmedians:")
    for k, v in med.items():
        print(f"  {k:<32} {v:8.1f}s  (runs: {', '.join(f'{x:.1f}' for x in results[k])})")

    def ratio(a: str, b: str) -> None:
        if a in med and b in med:
            print(f"  {a} / {b} = {med[a] / med[b]:.2f}")

    print("ratios:")
    ratio("backup posterity", "backup floor (pg_dump -Fc -Z0)")
    ratio("backup posterity", "backup floor+zstd")
    ratio("backup posterity (local folder)", "backup floor (pg_dump -Fc -Z0)")
    ratio("backup seed (sql+gzip+rclone)", "backup floor (pg_dump -Fc -Z0)")
    ratio("restore posterity --jobs 2", "restore pg_restore -j 2")
    ratio("restore posterity --jobs 2", "restore seed (gunzip|psql)")
    print("sizes:", {k: f"{v / 1e6:.1f} MB" for k, v in sizes.items()})
    if drill_rto:
        print(f"drill RTO (restore into a temporary cluster): median {statistics.median(drill_rto):.1f}s")
    if rss:
        print(f"posterity peak RSS: max {max(rss) / 1024:.0f} MiB over {len(rss)} runs")
    print(f"machine: {socket.gethostname()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    s3.stop()
    cluster.stop()


if __name__ == "__main__":
    main()
