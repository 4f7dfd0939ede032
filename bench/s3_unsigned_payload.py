"""Benchmark: backup upload speed with signed vs unsigned payloads (issue #18, item 3).

Run:  .venv/bin/python bench/s3_unsigned_payload.py --rounds 5 --mib 512

SigV4 with a signed payload puts the body's SHA-256 in the signature: the client hashes
every byte once more before it may send it (Posterity already hashes each payload for its
manifest). With ``unsigned_payload`` the header says ``UNSIGNED-PAYLOAD`` and nothing is
hashed for the signature. Each round, interleaved (the machine is shared and noisy), uploads
the same ``--mib`` MiB of random bytes (already-encrypted payloads look like this) as one
streamed multipart object through ``S3Store.put`` — the exact call a backup makes — to
SeaweedFS on loopback, once per contender:

  signed     S3Store(..., unsigned_payload=False)   (what every upload did before)
  unsigned   S3Store(..., unsigned_payload=True)    (now the default over https, e.g. R2)

Reported: the median seconds and MiB/s of each, and the median CPU seconds this process
spent (user + system, all its threads; the S3 server is another process) — the cost the
signature's hashing adds, and a figure far less disturbed by a busy machine than wall time.
The S3 server shares the machine's two cores, so wall time includes its CPU; R2 would not.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.seaweed import SeaweedS3  # noqa: E402

from posterity.storage.base import choose_part_size  # noqa: E402
from posterity.storage.s3 import S3Store  # noqa: E402

MiB = 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=512)
    args = ap.parse_args()
    data = os.urandom(args.mib * MiB)
    work = Path(tempfile.mkdtemp(prefix="posterity-bench-unsigned-"))
    s3 = SeaweedS3(work / "s3")
    s3.start()
    try:
        s3.create_bucket("bench-unsigned")
        stores = {
            name: S3Store("bench-unsigned", name, endpoint=s3.endpoint, region=s3.region,
                          access_key_id=s3.access_key, secret_access_key=s3.secret_key, unsigned_payload=unsigned)
            for name, unsigned in (("signed", False), ("unsigned", True))
        }
        part = choose_part_size(len(data))
        times: dict[str, list[float]] = {name: [] for name in stores}
        cpu: dict[str, list[float]] = {name: [] for name in stores}
        for r in range(args.rounds):
            for name, store in stores.items():
                key = f"round-{r}"
                u0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                store.put(key, (data[i : i + MiB] for i in range(0, len(data), MiB)), part_size=part)
                times[name].append(time.perf_counter() - t0)
                u1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu[name].append(u1.ru_utime - u0.ru_utime + u1.ru_stime - u0.ru_stime)
                info = store.stat(key)
                assert info is not None and info.size == len(data)
                store.delete([key])
            print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s ({cpu[n][-1]:.2f} s CPU)" for n, t in times.items()),
                  flush=True)
        print()
        print("| contender | median wall | MiB/s | median CPU of the client | runs (s) | CPU runs (s) |")
        print("|---|---|---|---|---|---|")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"| {name} | {med:.2f} s | {args.mib / med:.0f} | {statistics.median(cpu[name]):.2f} s | "
                  f"{', '.join(f'{t:.2f}' for t in ts)} | {', '.join(f'{t:.2f}' for t in cpu[name])} |")
        wall = statistics.median(times["signed"]) / statistics.median(times["unsigned"])
        used = statistics.median(cpu["signed"]) / statistics.median(cpu["unsigned"])
        print(f"\nsigned / unsigned: wall {wall:.2f}x, client CPU {used:.2f}x")
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
