"""Benchmark: what holds the peak RSS of a restore from S3 (issue #16's < 200 MiB goal).

    .venv/bin/python bench/restore_rss.py --work W --db bench --rounds 2 --jobs 2

Backs up ``--db`` of the cluster ``bench/bench_cluster.py`` keeps running (``--backup-jobs``:
2 the split layout, 1 the single archive, which a restore stages) into a SeaweedFS S3 server
on loopback, then restores it interleaved under variants, recording the peak RSS (VmHWM) of
the posterity process and its wall time:

- ``default``: as shipped (glibc's malloc arenas capped at 2 by ``posterity.malloc_arenas``);
- ``uncapped``: ``MALLOC_ARENA_MAX=16``, glibc's own limit on 2 cores (8 per core): as before the cap;
- ``window1`` / ``window2``: ``storage.s3.RANGE_WINDOW`` = 1 / 2 ranged GETs ahead (default 4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cluster import External  # noqa: E402
from cpuacct import run_watched  # noqa: E402
from tests.support.seaweed import SeaweedS3  # noqa: E402

PY = sys.executable
ENTRY = "import sys, posterity.storage.s3 as s; w = sys.argv.pop(1); s.RANGE_WINDOW = int(w) if w != '-' else \
s.RANGE_WINDOW; from posterity.cli.main import main; main()"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/var/tmp/posterity-bench")
    ap.add_argument("--db", default="bench")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", default="2", help="restore --jobs")
    ap.add_argument("--backup-jobs", default="2", help="backup --jobs (1: the single-archive layout)")
    ap.add_argument("--variants", default="default,uncapped,window1,window2")
    args = ap.parse_args()
    work = Path(args.work)
    cluster = External(work / "cluster.json")
    shutil.rmtree(work / "s3rss", ignore_errors=True)
    s3 = SeaweedS3(work / "s3rss", memory_limit=None)
    s3.start()
    s3.create_bucket("bench")
    proj = work / "projrss"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir()
    rec = subprocess.run([PY, "-m", "posterity", "key", "generate", "--out", str(proj / "key.txt")],
                         capture_output=True, text=True, check=True).stdout.strip()
    (proj / "posterity.toml").write_text(
        f'[repository]\nurl = "s3://bench/rss"\nendpoint = "{s3.endpoint}"\nregion = "{s3.region}"\n'
        f'access_key_id = "{s3.access_key}"\nsecret_access_key = "{s3.secret_key}"\n'
        f'[encryption]\nrecipients = ["{rec}"]\nidentity_file = "{proj / "key.txt"}"\n'
        f'[general]\nstate_dir = "{proj / "state"}"\nstaging_dir = "{work / "staging"}"\n'
        f'[sources.db]\nkind = "postgres"\ndsn = "{cluster.dsn(args.db)}"\n')
    cfg = ["--config", str(proj / "posterity.toml")]
    subprocess.run([PY, "-m", "posterity", *cfg, "init"], check=True, capture_output=True)
    out = subprocess.run([PY, "-m", "posterity", *cfg, "--json", "backup", "db", "--jobs", args.backup_jobs],
                         check=True, capture_output=True, text=True).stdout
    backup = json.loads(out)["backups"][0]
    big = sorted((a["size"] for a in backup["artifacts"]), reverse=True)[:3]
    print(f"backup {backup['id']}: {len(backup['artifacts'])} artifacts, largest {[f'{b / 2**20:.0f} MiB' for b in big]}")
    variants = {"default": ("-", {}), "uncapped": ("-", {"MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))}),
                "window1": ("1", {}), "window2": ("2", {})}
    variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    rss: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    load0 = os.getloadavg()[0]
    for r in range(args.rounds):
        for name, (window, extra) in variants.items():
            cluster.psql("drop database if exists r_rss with (force)")
            wall, peak, _ = run_watched([PY, "-c", ENTRY, window, *cfg, "restore", "db", backup["id"],
                                         "--to-database", "r_rss", "--jobs", args.jobs],
                                        env={**os.environ, **extra})
            rss.setdefault(name, []).append(peak / 1024)
            walls.setdefault(name, []).append(wall)
            print(f"round {r + 1} {name:<8} wall {wall:6.1f} s  peak RSS {peak / 1024:6.0f} MiB", flush=True)
    cluster.psql("drop database if exists r_rss with (force)")
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load0:.2f} → {os.getloadavg()[0]:.2f}, "
          f"backup --jobs {args.backup_jobs}, restore --jobs {args.jobs}")
    print("| variant | peak RSS MiB (max) | runs | median wall s |")
    print("|---|---|---|---|")
    for name in variants:
        print(f"| {name} | {max(rss[name]):.0f} | {', '.join(f'{x:.0f}' for x in rss[name])} | "
              f"{statistics.median(walls[name]):.1f} |")
    s3.stop()


if __name__ == "__main__":
    main()
