"""Benchmark: a physical base backup and its restore, Posterity against pgBackRest.

    apt-get install -y pgbackrest
    .venv/bin/python bench/pitr_backup_restore.py [--scale 130] [--rounds 2]

One throwaway PostgreSQL 15 cluster with a pgbench database (scale 130 ≈ 2 GB). Its
archive_command archives every segment to both tools (Posterity's lean entry, then
``pgbackrest archive-push``), since each tool's backup waits for its own WAL. Rounds are
interleaved (the machine is shared and noisy); medians are reported.

- backup:  ``posterity backup pitr`` (file:// repository, zstd default level, age) vs
           ``pgbackrest backup --type=full`` (repo on local disk, compress-type=zst, process-max=2)
- restore: ``posterity restore pitr latest --to-directory D`` (no --start) vs
           ``pgbackrest restore --pg1-path=D`` (files only, neither starts the server)
- floor:   ``pg_basebackup -D - -Ft -X none > /dev/null`` (reading the cluster, nothing else)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from wal_push_latency import python_for_postgres  # noqa: E402

from posterity.pgcluster import TempCluster  # noqa: E402
from posterity.pipeline import generate_identity  # noqa: E402

VENV = Path(sys.executable).parent


def timed(argv: list[str], **kw) -> float:
    os.sync()  # earlier runs' dirty pages are written back outside the measurement
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=130)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--zstd-threads", type=int, default=-1, help="[encryption] zstd_threads for Posterity (its default: -1)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="posterity-pitrbench-"))
    work.chmod(0o755)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    try:
        recipient = generate_identity(work / "key.txt")
        config, pgbr_conf = work / "posterity.toml", work / "pgbackrest.conf"
        cluster = TempCluster(conf={
            "archive_mode": "on", "max_wal_size": "1GB",
            "archive_command": f"{python_for_postgres()} -m posterity.cli.walfast push -c {config} %p && "
                               f"pgbackrest --config={pgbr_conf} --stanza=bench archive-push %p",
        })
        config.write_text(f'[repository]\nurl = "file://{work / "repo"}"\n[encryption]\nrecipients = ["{recipient}"]\n'
                          f'identity_file = "{work / "key.txt"}"\nzstd_threads = {args.zstd_threads}\n'
                          f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{cluster.dsn()}"\n')
        pgbr_conf.write_text(
            f"[global]\nrepo1-path={work / 'pgbr'}\ncompress-type=zst\nprocess-max=2\nstart-fast=y\n"
            f"log-level-console=warn\nlog-path={work / 'pgbr-log'}\nlock-path={work / 'pgbr-lock'}\n"
            f"[bench]\npg1-path={cluster.data_dir}\npg1-port={cluster.port}\npg1-socket-path={cluster.socket_dir}\n"
            "pg1-user=postgres\n")
        subprocess.run([str(VENV / "posterity"), "-c", str(config), "init"], check=True, capture_output=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
        cluster.start()
        c = cluster
        timed([*as_pg, "pgbackrest", f"--config={pgbr_conf}", "--stanza=bench", "stanza-create"])
        t0 = time.perf_counter()
        c.run_as_owner([str(c.bin_dir / "pgbench"), "-i", "-q", "-s", str(args.scale), "-h", c.host, "-p",
                        str(c.port), "-U", "postgres", "postgres"], timeout=1800)
        size = int(c.psql("select pg_database_size('postgres')").strip())
        print(f"database: pgbench scale {args.scale}, {size / 2**30:.2f} GiB (loaded in {time.perf_counter() - t0:.0f}s)")
        results: dict[str, list[float]] = {k: [] for k in (
            "floor pg_basebackup > /dev/null", "posterity backup", "pgbackrest backup",
            "posterity restore", "pgbackrest restore")}
        env = {**os.environ, "POSTERITY_EXECUTABLE": f"{python_for_postgres()} -m posterity"}
        for r in range(args.rounds):
            results["floor pg_basebackup > /dev/null"].append(timed(
                ["sh", "-c", f"{c.bin_dir / 'pg_basebackup'} -d '{c.dsn()}' -D - -Ft -X none -c fast > /dev/null"]))
            d1, d2 = work / f"restore-posterity-{r}", work / f"restore-pgbr-{r}"
            d2.mkdir(mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(d2, "postgres", "postgres")
            steps = {
                "posterity backup": lambda: timed([str(VENV / "posterity"), "-c", str(config), "backup", "pitr"]),
                "pgbackrest backup": lambda: timed(
                    [*as_pg, "pgbackrest", f"--config={pgbr_conf}", "--stanza=bench", "--type=full", "backup"]),
                "posterity restore": lambda d=d1: timed(
                    [str(VENV / "posterity"), "-c", str(config), "restore", "pitr", "latest", "--to-directory", str(d)],
                    env=env),
                "pgbackrest restore": lambda d=d2: timed(
                    [*as_pg, "pgbackrest", f"--config={pgbr_conf}", "--stanza=bench", f"--pg1-path={d}", "restore"]),
            }
            order = [["posterity backup", "pgbackrest backup"], ["posterity restore", "pgbackrest restore"]]
            for pair in order:
                for label in (pair if r % 2 == 0 else pair[::-1]):  # alternate who goes first
                    results[label].append(steps[label]())
            shutil.rmtree(d1)
            shutil.rmtree(d2)
        stored = sum(f.stat().st_size for f in (work / "repo" / "backups").rglob("*.zst.age")) / args.rounds
        print(f"posterity base backup stored: {stored / 2**20:.0f} MiB per backup")
        for label, values in results.items():
            print(f"{label:<34} median {statistics.median(values):6.2f}s   runs {', '.join(f'{v:.2f}' for v in values)}")
        b = statistics.median(results["posterity backup"]) / statistics.median(results["pgbackrest backup"])
        rr = statistics.median(results["posterity restore"]) / statistics.median(results["pgbackrest restore"])
        print(f"ratio posterity/pgbackrest: backup {b:.2f}x, restore {rr:.2f}x")
        cluster.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
