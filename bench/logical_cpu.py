"""Benchmark: where the CPU of a logical backup goes, and which settings change it.

    .venv/bin/python bench/bench_cluster.py --work W &          # once: seeds and keeps the databases
    .venv/bin/python bench/logical_cpu.py --work W --db bench --rounds 3 \
        --variants "L3:level=3;L1:level=1;L1T0:level=1,threads=0;L3J2:level=3,jobs=2"

Each round runs every contender once, in the same order (interleaved: the machine is
shared). Per contender: wall time, and user+sys CPU seconds split into pg_dump (and zstd
for the shell floors), the PostgreSQL backends, SeaweedFS, and Posterity's own threads
(main, the uploader's tokio threads, the encoder/zstd worker threads). Medians over rounds.

A variant is ``name:key=value,…`` with keys ``level`` (``[encryption] zstd_level``),
``threads`` (``zstd_threads``), ``jobs`` (``--jobs``), ``counts`` (the source's ``row_counts``)
and ``store`` (``s3`` or ``local``).
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

from bench_cluster import External  # noqa: E402
from cpuacct import Meter, run_watched  # noqa: E402
from tests.support.seaweed import SeaweedS3  # noqa: E402

PY = sys.executable


def parse_variants(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for part in filter(None, text.split(";")):
        name, _, kv = part.partition(":")
        out[name.strip()] = dict(x.split("=", 1) for x in filter(None, kv.split(",")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/var/tmp/posterity-bench")
    ap.add_argument("--db", default="bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="L3:level=3;L1:level=1")
    ap.add_argument("--floors", default="floor,zstd3,zstd1", help="shell contenders: floor, zstd1, zstd3, fd2")
    args = ap.parse_args()
    work = Path(args.work)
    cluster = External(work / "cluster.json")
    variants = parse_variants(args.variants)
    s3 = SeaweedS3(work / "s3cpu", memory_limit=None)
    shutil.rmtree(work / "s3cpu", ignore_errors=True)
    s3.start()
    s3.create_bucket("bench")
    assert s3.proc is not None
    proj = work / "projcpu"
    shutil.rmtree(proj, ignore_errors=True)
    proj.mkdir()
    rec = subprocess.run([PY, "-m", "posterity", "key", "generate", "--out", str(proj / "key.txt")],
                         capture_output=True, text=True, check=True).stdout.strip()
    configs: dict[str, list[str]] = {}
    for name, v in variants.items():
        if v.get("store", "s3") == "s3":
            repo = (f'url = "s3://bench/{name}"\nendpoint = "{s3.endpoint}"\nregion = "{s3.region}"\n'
                    f'access_key_id = "{s3.access_key}"\nsecret_access_key = "{s3.secret_key}"\n')
        else:
            shutil.rmtree(work / f"repo-{name}", ignore_errors=True)
            repo = f'url = "file://{work / f"repo-{name}"}"\n'
        enc = "".join(f"{k} = {v[s]}\n" for s, k in (("level", "zstd_level"), ("threads", "zstd_threads")) if s in v)
        (proj / f"{name}.toml").write_text(
            f'[repository]\n{repo}[encryption]\nrecipients = ["{rec}"]\n{enc}'
            f'[general]\nstate_dir = "{proj / "state" / name}"\nstaging_dir = "{work / "staging"}"\n'
            f'[sources.db]\nkind = "postgres"\ndsn = "{cluster.dsn(args.db)}"\n'
            + (f'row_counts = "{v["counts"]}"\n' if "counts" in v else ""))
        configs[name] = [PY, "-m", "posterity", "--config", str(proj / f"{name}.toml")]
        subprocess.run([*configs[name], "init"], check=True, capture_output=True)

    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    pg_dump = f"{cluster.bin_dir}/pg_dump"
    shells = {
        "floor": f"{pg_dump} -Fc -Z0 {args.db} > /dev/null",
        "zstd1": f"{pg_dump} -Fc -Z0 {args.db} | zstd -q -T0 -1 > /dev/null",
        "zstd3": f"{pg_dump} -Fc -Z0 {args.db} | zstd -q -T0 -3 > /dev/null",
        "fd2": f"rm -rf {work}/fd && {pg_dump} -Fd -Z0 -j 2 -f {work}/fd {args.db} && rm -rf {work}/fd",
    }
    rows: dict[str, list[dict[str, float]]] = {}
    sizes: dict[str, int] = {}
    load0 = os.getloadavg()
    start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}  load {os.getloadavg()[0]:.2f}", flush=True)
        for name in filter(None, args.floors.split(",")):
            with Meter(cluster.postmaster_pid, s3.proc.pid) as m:
                t0 = time.monotonic()
                subprocess.run(["bash", "-o", "pipefail", "-c", shells[name]], check=True, env=env)
                wall = time.monotonic() - t0
            row = {"wall": wall, "dump+zstd": m.result["own"], "backend": m.result["pg"], "s3": m.result["s3"]}
            rows.setdefault(name, []).append(row)
            print(f"  {name:<10} " + "  ".join(f"{k} {v:6.2f}" for k, v in row.items()), flush=True)
        for name, v in variants.items():
            out = work / "cpu-out.json"
            with Meter(cluster.postmaster_pid, s3.proc.pid) as m:
                wall, peak, parts = run_watched([*configs[name], "--json", "backup", "db", "--jobs", v.get("jobs", "1")],
                                                out=out)
            total_own = m.result["own"]
            row = {"wall": wall, "pg_dump": parts["children"], "backend": m.result["pg"], "s3": m.result["s3"],
                   "main": parts["main"], "uploader": parts["uploader"], "workers": parts["workers"],
                   "posterity": total_own - parts["children"], "rss_mib": peak / 1024}
            rows.setdefault(name, []).append(row)
            sizes[name] = json.loads(out.read_text())["backups"][0]["size"]
            print(f"  {name:<10} " + "  ".join(f"{k} {v:6.2f}" for k, v in row.items()), flush=True)
    load1 = os.getloadavg()
    print(f"\n{args.db}: medians of {args.rounds} rounds, {start} → {time.strftime('%H:%M:%S UTC', time.gmtime())}, "
          f"load avg (1 min) start {load0[0]:.2f} end {load1[0]:.2f}, {socket.gethostname()}, {os.cpu_count()} cores")
    keys = ["wall", "dump+zstd", "pg_dump", "backend", "s3", "posterity", "main", "uploader", "workers", "rss_mib"]
    print("| contender | " + " | ".join(keys) + " | stored MB |")
    print("|---" * (len(keys) + 2) + "|")
    for name, rs in rows.items():
        cells = []
        for k in keys:
            vals = [x[k] for x in rs if k in x]
            cells.append(f"{statistics.median(vals):.2f}" if vals else "")
        size = f"{sizes[name] / 1e6:.1f}" if name in sizes else ""
        print(f"| {name} | " + " | ".join(cells) + f" | {size} |")
    print("walls per round:", {k: [round(x["wall"], 2) for x in v] for k, v in rows.items()})
    s3.stop()


if __name__ == "__main__":
    main()
