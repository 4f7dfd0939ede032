"""Benchmark: CPU of Posterity's encoder alone (zstd → age → sha256) per zstd setting.

    .venv/bin/python bench/encoder_cpu.py FILE --levels -5,-1,1,3 --threads 0,-1 --rounds 3

FILE is a raw pg_dump archive (``pg_dump -Fc -Z0 -f FILE``), read from the page cache
(one read before the rounds). Per setting: CPU seconds of this process (user+sys, all its
threads: encoder, zstd workers, the consuming loop), wall seconds, stored bytes; medians.
No pg_dump, backend, store or upload is involved: this is the cost Posterity's pipeline adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import pyrage  # noqa: E402

from posterity.pipeline.stages import Stages, encode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--levels", default="1,3")
    ap.add_argument("--threads", default="0")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.file)
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    settings = [(int(lv), int(th)) for lv in args.levels.split(",") for th in args.threads.split(",")]
    res: dict[tuple[int, int], list[tuple[float, float]]] = {}
    sizes: dict[tuple[int, int], int] = {}
    load0 = os.getloadavg()[0]
    for r in range(args.rounds):
        for lv, th in settings:
            stages = Stages((recipient,), zstd_level=lv, zstd_threads=th)
            c0, t0 = time.process_time(), time.monotonic()
            with path.open("rb", buffering=0) as fh:
                stream = encode(fh, stages)
                for _ in stream:
                    pass
            cpu, wall = time.process_time() - c0, time.monotonic() - t0
            res.setdefault((lv, th), []).append((cpu, wall))
            sizes[(lv, th)] = stream.size
            print(f"round {r + 1} level {lv:>3} threads {th:>2}: cpu {cpu:6.2f} s  wall {wall:6.2f} s  "
                  f"stored {stream.size / 1e6:8.1f} MB", flush=True)
    raw = path.stat().st_size
    print(f"\n{path} ({raw / 1e6:.0f} MB raw), {args.rounds} rounds, load avg {load0:.2f} → {os.getloadavg()[0]:.2f}")
    print("| zstd level | zstd threads | CPU s (median) | CPU s per GB raw | wall s | stored MB | ratio |")
    print("|---|---|---|---|---|---|---|")
    for (lv, th), v in res.items():
        cpu = statistics.median(x[0] for x in v)
        wall = statistics.median(x[1] for x in v)
        print(f"| {lv} | {th} | {cpu:.2f} | {cpu / raw * 1e9:.2f} | {wall:.2f} | {sizes[(lv, th)] / 1e6:.1f} | "
              f"{raw / sizes[(lv, th)]:.1f}× |")


if __name__ == "__main__":
    main()
