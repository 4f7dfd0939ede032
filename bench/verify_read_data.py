"""Benchmark: `posterity verify --read-data` throughput against the raw download speed.

Run:  .venv/bin/python bench/verify_read_data.py --rounds 3

A ~100 MB stored backup (a sample database plus ~190 MB of hex text, which zstd halves)
in SeaweedFS on loopback. Each round, interleaved (the machine is shared and noisy):

  download     every payload of the backup streamed from S3 and discarded (obstore, the
               same client Posterity uses): the floor
  verify-full  posterity verify <id> --read-data: download + sha256 + age + zstd + the
               kind check (pg_restore reads the whole archive)

Throughput is stored bytes per second, medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.harness import S3_CREDENTIALS, Setup, s3_env  # noqa: E402
from tests.support.seaweed import SeaweedS3  # noqa: E402

from posterity.demo import load_sample  # noqa: E402
from posterity.pgcluster import TempCluster  # noqa: E402

MB = 1_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=185_000, help="filler rows of 1 KiB hex text")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="posterity-bench-verify-"))
    s3 = SeaweedS3(work / "s3")
    s3.start()
    try:
        with TempCluster() as pg:
            pg.psql("CREATE DATABASE bench")
            load_sample(pg.dsn("bench"), posters=2000)
            pg.psql(
                "CREATE TABLE filler (id int PRIMARY KEY, body text);"
                "INSERT INTO filler SELECT i, (SELECT string_agg(md5(random()::text || i || g), '')"
                f" FROM generate_series(1, 32) g) FROM generate_series(1, {args.rows}) i;",
                dbname="bench",
            )
            s3.create_bucket("bench-verify")
            s = Setup(
                work / "env",
                "s3://bench-verify/repo",
                pg.dsn("bench"),
                endpoint=s3.endpoint,
                env=s3_env(s3),
                repo_extra=S3_CREDENTIALS,
            )
            assert s.run("init").code == 0
            r = s.run("backup", "db", "--json")
            assert r.code == 0, r
            backup = r.json()["backups"][0]
            stored = sum(a["size"] for a in backup["artifacts"])
            print(
                f"backup {backup['id']}: {stored / MB:.1f} MB stored, {backup['raw_size'] / MB:.1f} MB raw"
            )
            store = s.context().store
            results: dict[str, list[float]] = {"download": [], "verify-full": []}
            for i in range(args.rounds):
                t = time.monotonic()
                n = sum(len(c) for a in backup["artifacts"] for c in store.get(a["key"]))
                results["download"].append(time.monotonic() - t)
                assert n == stored
                t = time.monotonic()
                r = s.run("verify", backup["id"], "--read-data", "--json")
                results["verify-full"].append(time.monotonic() - t)
                assert r.code == 0 and r.json()["objects_read"] == len(backup["artifacts"]), r
                print(
                    f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items())
                )
            summary = {
                k: {
                    "median_s": round(statistics.median(v), 2),
                    "MB_per_s": round(stored / MB / statistics.median(v), 1),
                }
                for k, v in results.items()
            }
            summary["ratio_verify_to_download"] = round(
                summary["verify-full"]["median_s"] / summary["download"]["median_s"], 2
            )
            summary["stored_MB"] = round(stored / MB, 1)
            summary["raw_MB"] = round(backup["raw_size"] / MB, 1)
            summary["cpus"] = os.cpu_count()
            print(json.dumps(summary, indent=2))
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
