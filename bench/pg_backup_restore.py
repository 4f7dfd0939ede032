"""Benchmark: Posterity's PostgreSQL backup and restore against the floor and the seed.

Run:  scripts/bootstrap && apt-get install -y rclone && .venv/bin/python bench/pg_backup_restore.py --rounds 3

One run, interleaved rounds (the machine is shared and noisy): each round runs every
contender once, in the same order; we report medians and ratios.

Contenders (backup):   floor      pg_dump -Fc -Z0 > /dev/null
                       floor+zstd pg_dump -Fc -Z0 | zstd -T0 -3 > /dev/null
                       seed       pg_dump > db.sql; gzip db.sql; rclone copy (to the same S3 server)
                       posterity  posterity backup (S3 server, zstd at the configured level (default 1), age)
Contenders (restore):  seed       gunzip -c db.sql.gz | psql
                       pg_restore pg_restore -j 2 from a local custom-format file
                       posterity  posterity restore --jobs 2 (from the S3 server)

The database: pgbench -i -s 100 plus 300,000 Posters.science rows (~2 GB), built once
in a persistent throwaway cluster under --work (reused by later runs).

--jobs 1,2 runs every Posterity contender once per value (backup --jobs J, restore --jobs J
of the split backup the largest J made) and adds "restore posterity single archive
--jobs 2", the old layout, for comparison. --shape picks the database:
  mixed     pgbench + Posters.science rows (the default above);
  dominant  pgbench alone: one table holds almost everything;
  many      the pgbench rows spread over --tables tables of equal size, with primary keys.
--no-seed skips the seed's slow sql+gzip contenders.
--cluster FILE reuses the cluster ``bench/bench_cluster.py`` keeps running (its cluster.json)
instead of starting and seeding one (the mixed database takes minutes to build).
Every contender's CPU seconds (user+sys) are recorded too, split into the client side
(pg_dump/pg_restore/psql/Posterity and their children), the PostgreSQL server's processes and
the S3 server's (``bench/cpuacct.py``); CPU is far less sensitive to a shared machine than wall time.
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
sys.path.insert(0, str(ROOT / "bench"))

from bench_cluster import External, seed  # noqa: E402
from cpuacct import Meter  # noqa: E402
from tests.support.seaweed import SeaweedS3  # noqa: E402

from posterity.pgcluster import TempCluster  # noqa: E402

PY = sys.executable


PIDS: dict[str, int | None] = {"pg": None, "s3": None}
LAST_CPU: dict[str, float] = {}  # the CPU seconds of the last sh()/run_measured()


def sh(cmd: str, env=None) -> float:
    with Meter(PIDS["pg"], PIDS["s3"]) as m:
        t = time.monotonic()
        subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env)
        wall = time.monotonic() - t
    LAST_CPU.clear()
    LAST_CPU.update(m.result)
    return wall


def run_measured(argv: list[str], env=None, out: Path | None = None) -> tuple[float, int]:
    """Wall seconds and the peak RSS (KiB, VmHWM) of the process itself (stdout to ``out``)."""
    meter = Meter(PIDS["pg"], PIDS["s3"]).__enter__()
    t = time.monotonic()
    sink = open(out, "wb") if out else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, stdout=sink)
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
    if out:
        sink.close()  # type: ignore[union-attr]
    wall = time.monotonic() - t
    meter.__exit__(None, None, None)
    LAST_CPU.clear()
    LAST_CPU.update(meter.result)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with {proc.returncode}")
    return wall, peak


def backup_id(out: Path) -> str:
    return json.loads(out.read_text())["backups"][0]["id"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=100)
    ap.add_argument("--posters", type=int, default=300_000)
    ap.add_argument("--work", default="/var/tmp/posterity-bench")
    ap.add_argument("--only", default="", help="comma list: backup,restore")
    ap.add_argument("--jobs", default="1,2", help="comma list of posterity --jobs values")
    ap.add_argument("--shape", choices=["mixed", "dominant", "many"], default="mixed")
    ap.add_argument("--tables", type=int, default=32, help="--shape many: number of tables")
    ap.add_argument("--no-seed", action="store_true")
    ap.add_argument("--cluster", default="", help="cluster.json of a running bench/bench_cluster.py")
    args = ap.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    dbname = "bench" if args.shape == "mixed" else f"bench_{args.shape}_{args.scale}"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    only = set(filter(None, args.only.split(",")))

    if args.cluster:
        cluster = External(Path(args.cluster))
        pg_pid: int | None = cluster.postmaster_pid
    else:
        cluster = TempCluster(base_dir=work / "pg", port=None, conf={"max_wal_size": "4GB", "shared_buffers": "512MB"})
        cluster.start()
        pg_pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    env.pop("AWS_CA_BUNDLE", None)  # rclone refuses a custom CA bundle with its plain-HTTP transport
    bin_dir = cluster.bin_dir
    seed(cluster, args.shape, args.scale, args.posters, args.tables)
    size = int(cluster.psql(f"select pg_database_size('{dbname}')", dbname=dbname))
    print(f"database size: {size / 1e9:.2f} GB", flush=True)

    s3 = SeaweedS3(work / "s3", memory_limit=None)
    s3.start()
    s3.create_bucket("bench")
    PIDS["pg"], PIDS["s3"] = pg_pid, s3.proc.pid if s3.proc else None
    load_start = os.getloadavg()
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
dsn = "{cluster.dsn(dbname)}"
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
    rss: dict[str, list[int]] = {}
    ids: dict[int, str] = {}
    sizes: dict[str, int] = {}

    cpu: dict[str, list[dict[str, float]]] = {}

    def record(name: str, secs: float) -> None:
        results.setdefault(name, []).append(secs)
        cpu.setdefault(name, []).append(dict(LAST_CPU))
        print(f"  {name:<28} {secs:8.1f}s  cpu client {LAST_CPU['own']:.2f}s server {LAST_CPU['pg']:.2f}s "
              f"s3 {LAST_CPU['s3']:.2f}s", flush=True)

    def drop(db: str) -> None:
        cluster.psql(f"drop database if exists {db} with (force)")

    # A local custom-format dump for the pg_restore baseline.
    if not only or "restore" in only:
        sh(f"{pg_dump} -Fc -Z0 -f {dumps}/bench.pgdump {dbname}", env)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        if not only or "backup" in only:
            record("backup floor (pg_dump -Fc -Z0)", sh(f"{pg_dump} -Fc -Z0 {dbname} > /dev/null", env))
            record("backup floor+zstd", sh(f"{pg_dump} -Fc -Z0 {dbname} | zstd -q -T0 -3 > /dev/null", env))
            if max(jobs) > 1:
                shutil.rmtree(dumps / "dir", ignore_errors=True)
                record(f"backup pg_dump -Fd -Z0 -j {max(jobs)}",
                       sh(f"{pg_dump} -Fd -Z0 -j {max(jobs)} -f {dumps}/dir {dbname}", env))
                shutil.rmtree(dumps / "dir", ignore_errors=True)
            if not args.no_seed:
                t = sh(f"{pg_dump} {dbname} > {dumps}/db.sql && gzip -f {dumps}/db.sql && "
                       f"{rclone} copy {dumps}/db.sql.gz s3:bench/seed-{r}/", env)
                record("backup seed (sql+gzip+rclone)", t)
                sizes["seed gzip"] = (dumps / "db.sql.gz").stat().st_size
            for j in jobs:
                secs, peak = run_measured([*P, "--json", "backup", "db", "--jobs", str(j)], out=work / "out.json")
                record(f"backup posterity --jobs {j}", secs)
                ids[j] = backup_id(work / "out.json")
                rss.setdefault(f"backup --jobs {j}", []).append(peak)
                secs, peak = run_measured([*PL, "backup", "db", "--jobs", str(j)])
                record(f"backup posterity (local folder) --jobs {j}", secs)
                rss.setdefault(f"backup local --jobs {j}", []).append(peak)
        if not only or "restore" in only:
            if not args.no_seed:
                if not (dumps / "db.sql.gz").exists():
                    sh(f"{pg_dump} {dbname} | gzip > {dumps}/db.sql.gz", env)
                drop("r_seed")
                cluster.psql("create database r_seed")
                record("restore seed (gunzip|psql)", sh(f"gunzip -c {dumps}/db.sql.gz | {bin_dir}/psql -q -X -d r_seed > /dev/null", env))
                drop("r_seed")
            drop("r_pgr")
            cluster.psql("create database r_pgr")
            record("restore pg_restore -j 2", sh(f"{bin_dir}/pg_restore -j 2 -d r_pgr {dumps}/bench.pgdump", env))
            drop("r_pgr")
            split = ids.get(max(jobs), "latest")
            for j in jobs:
                drop("r_post")
                secs, peak = run_measured([*P, "restore", "db", split, "--to-database", "r_post", "--jobs", str(j)])
                record(f"restore posterity --jobs {j}", secs)
                rss.setdefault(f"restore --jobs {j}", []).append(peak)
                drop("r_post")
            if 1 in ids and max(jobs) > 1:  # the old single-archive layout (staged for -j 2)
                drop("r_post")
                secs, peak = run_measured([*P, "restore", "db", ids[1], "--to-database", "r_post", "--jobs", "2"])
                record("restore posterity single archive --jobs 2", secs)
                rss.setdefault("restore single --jobs 2", []).append(peak)
                drop("r_post")

    drill_rto: list[float] = []
    if not only or "drill" in only:
        # The real RTO: `posterity drill` restores the latest backup into a fresh temporary
        # cluster (initdb included), checks row counts, and cleans up.
        for _ in range(max(1, args.rounds // 2)):  # the latest backup: the largest --jobs's layout
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
    print("median CPU seconds (user+sys): client | PostgreSQL server | S3 server | total")
    for k, rows in cpu.items():
        c = {p: statistics.median(r[p] for r in rows) for p in ("own", "pg", "s3")}
        print(f"  {k:<40} {c['own']:6.2f} | {c['pg']:6.2f} | {c['s3']:6.2f} | {sum(c.values()):6.2f}")
    print(f"load average (1 min): start {load_start[0]:.2f}, end {os.getloadavg()[0]:.2f}")

    def ratio(a: str, b: str) -> None:
        if a in med and b in med:
            print(f"  {a} / {b} = {med[a] / med[b]:.2f}")

    print("ratios:")
    floor = "backup floor (pg_dump -Fc -Z0)"
    for j in jobs:
        ratio(f"backup posterity --jobs {j}", floor)
        ratio(f"backup posterity (local folder) --jobs {j}", floor)
        ratio(f"restore posterity --jobs {j}", "restore pg_restore -j 2")
        ratio(f"restore posterity --jobs {j}", "restore seed (gunzip|psql)")
    ratio(f"backup pg_dump -Fd -Z0 -j {max(jobs)}", floor)
    ratio("backup seed (sql+gzip+rclone)", floor)
    ratio("restore posterity single archive --jobs 2", "restore pg_restore -j 2")
    print("per-round ratios (backup --jobs J / floor, same round):")
    for j in jobs:
        a, b = results.get(f"backup posterity --jobs {j}", []), results.get(floor, [])
        print(f"  --jobs {j}: " + ", ".join(f"{x / y:.2f}" for x, y in zip(a, b, strict=False)))
    print("sizes:", {k: f"{v / 1e6:.1f} MB" for k, v in sizes.items()})
    if drill_rto:
        print(f"drill RTO (restore into a temporary cluster): median {statistics.median(drill_rto):.1f}s")
    for k, v in rss.items():
        print(f"posterity peak RSS, {k}: max {max(v) / 1024:.0f} MiB over {len(v)} runs")
    print(f"machine: {socket.gethostname()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    s3.stop()
    cluster.stop()  # an External cluster stays up


if __name__ == "__main__":
    main()
