"""Latency of one WAL push, as PostgreSQL's archive_command sees it (process start to exit).

    .venv/bin/python bench/wal_push_latency.py [--pushes 40] [--pgbench-seconds 30]

Segments: real WAL written by pgbench on a throwaway PostgreSQL 15 (copied from pg_wal),
so compression behaves as in production. Two entry points, interleaved so machine load
affects both alike:

- ``posterity wal push``                     the full CLI (click, every command, pydantic schema)
- ``python -m posterity.cli.walfast push``   the lean entry (tomllib, store, zstd, age)

With ``--pgbench-seconds N`` it also runs ``pgbench -c 4 -T N`` against a cluster whose
archive_command is the lean entry, and reports segments written vs archived and the
``.ready`` backlog at the end (the issue's "archiving keeps up" check).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from posterity.pgcluster import TempCluster  # noqa: E402
from posterity.pipeline import generate_identity  # noqa: E402

VENV = Path(sys.executable).parent


def real_segments(count: int) -> list[bytes]:
    with TempCluster() as c:
        pgbench = c.bin_dir / "pgbench"
        c.run_as_owner([str(pgbench), "-i", "-s", "5", "-h", c.host, "-p", str(c.port), "-U", "postgres", "postgres"])
        segs: list[bytes] = []
        while len(segs) < count:
            c.run_as_owner([str(pgbench), "-T", "3", "-c", "2", "-h", c.host, "-p", str(c.port), "-U", "postgres",
                            "postgres"])
            c.psql("select pg_switch_wal()")
            names = sorted(p for p in (c.data_dir / "pg_wal").iterdir() if len(p.name) == 24)
            segs += [p.read_bytes() for p in names[:-1]][: count - len(segs)]
        return segs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_latency(pushes: int, work: Path, config: Path) -> dict[str, dict[str, float]]:
    segs = real_segments(min(pushes, 8))
    entries = {
        "posterity wal push": [str(VENV / "posterity"), "-c", str(config), "wal", "push"],
        "python -m posterity.cli.walfast push": [sys.executable, "-m", "posterity.cli.walfast", "push", "-c", str(config)],
    }
    times: dict[str, list[float]] = {k: [] for k in entries}
    cpu: dict[str, float] = {k: 0.0 for k in entries}
    n = 0
    for i in range(pushes):
        for label, argv in entries.items():
            n += 1
            name = f"00000099{n // 256:08X}{n % 256:08X}"  # timeline 0x99: apart from the pgbench run's
            path = work / name
            path.write_bytes(segs[i % len(segs)])
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([*argv, str(path)], check=True)
            times[label].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[label] += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            path.unlink()
    return {label: {"p50": statistics.median(t), "p99": percentile(t, 0.99), "max": max(t),
                    "cpu_per_push": cpu[label] / len(t)} for label, t in times.items()}


def python_for_postgres() -> str:
    """A Python the PostgreSQL OS user can run with this code importable (shell words)."""
    if os.geteuid() != 0:
        return sys.executable
    probe = subprocess.run(["runuser", "-u", "postgres", "--", sys.executable, "-c", "import posterity"],
                           capture_output=True, check=False)
    if probe.returncode == 0:
        return sys.executable
    site = next(p for p in sys.path if p.endswith("site-packages"))
    return f"PYTHONPATH={ROOT / 'src'}:{site} /usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


def bench_pgbench(seconds: int, work: Path, config: Path) -> dict[str, float]:
    timings = work / "push-times.log"
    wrapper = work / "timed-push"
    wrapper.write_text(
        "#!/bin/sh\n"
        "s=$(date +%s%N)\n"
        f"{python_for_postgres()} -m posterity.cli.walfast push -c {config} \"$1\"\n"
        "rc=$?\n"
        f'echo "$s $(date +%s%N) $rc" >> {timings}\n'
        "exit $rc\n")
    wrapper.chmod(0o755)
    if os.geteuid() == 0:
        subprocess.run(["chown", "postgres:postgres", str(wrapper), str(work)], check=True)
    with TempCluster(conf={"archive_mode": "on", "archive_command": f"{wrapper} %p", "max_wal_size": "256MB"}) as c:
        pgbench = c.bin_dir / "pgbench"
        conn = ["-h", c.host, "-p", str(c.port), "-U", "postgres", "postgres"]
        c.run_as_owner([str(pgbench), "-i", "-s", "20", *conn])
        start = int(c.psql("select archived_count from pg_stat_archiver").strip())
        lsn0 = c.psql("select pg_current_wal_lsn()").strip()
        status_dir = c.data_dir / "pg_wal" / "archive_status"
        backlog: list[int] = []
        done = threading.Event()

        def sample() -> None:  # the .ready backlog every 10 s: growing means archiving falls behind
            while not done.wait(10):
                backlog.append(len(list(status_dir.glob("*.ready"))))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        c.run_as_owner([str(pgbench), "-c", "4", "-T", str(seconds), *conn], timeout=seconds + 60)
        elapsed = time.monotonic() - t0
        done.set()
        written = float(c.psql(f"select pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}') / (16*1024*1024)").strip())
        archived = int(c.psql("select archived_count from pg_stat_archiver").strip()) - start
        ready = len(list((c.data_dir / "pg_wal" / "archive_status").glob("*.ready")))
        failed = int(c.psql("select failed_count from pg_stat_archiver").strip())
    pushes = [(int(e) - int(s)) / 1e9 for s, e, _ in (line.split() for line in timings.read_text().splitlines())]
    return {"seconds": round(elapsed, 1), "segments_written": round(written, 1), "segments_archived": archived,
            "archived_per_second": round(archived / elapsed, 2), "ready_backlog_at_end": ready, "failures": failed,
            "push_p50_ms": round(statistics.median(pushes) * 1000), "push_p99_ms": round(percentile(pushes, 0.99) * 1000),
            "push_max_ms": round(max(pushes) * 1000), "pushes_timed": len(pushes), "ready_backlog_every_10s": backlog}


def bench_pgbench_stream(seconds: int, work: Path, config: Path, interval: float) -> dict[str, object]:
    """The same pgbench load with ``wal = "stream"``: does the streamer keep up?"""
    with TempCluster(conf={"max_wal_size": "256MB"}) as c:
        stream_config = work / "stream.toml"
        stream_config.write_text(config.read_text().replace(f"file://{work / 'repo'}", f"file://{work / 'stream-repo'}").replace(
            'dsn = "postgresql://localhost/postgres"',
            f'dsn = "{c.dsn()}"\nwal = "stream"\nstream_interval = {interval}') +
            f'[general]\nstate_dir = "{work / "state"}"\n')
        subprocess.run([str(VENV / "posterity"), "-c", str(stream_config), "init"], check=True, capture_output=True)
        pgbench = c.bin_dir / "pgbench"
        conn = ["-h", c.host, "-p", str(c.port), "-U", "postgres", "postgres"]
        c.run_as_owner([str(pgbench), "-i", "-s", "20", *conn])
        streamer = subprocess.Popen([str(VENV / "posterity"), "-c", str(stream_config), "wal", "stream"])
        try:
            deadline = time.monotonic() + 30
            while c.psql("select count(*) from pg_replication_slots where active").strip() != "1":
                if time.monotonic() > deadline:
                    raise SystemExit("the streamer did not start")
                time.sleep(0.1)
            folder = work / "state" / "walstream" / "pitr"
            behind: list[tuple[int, int]] = []  # (local files waiting, MiB the slot holds back)
            done = threading.Event()

            def sample() -> None:
                while not done.wait(10):
                    waiting = len([n for n in os.listdir(folder) if len(n) == 24])
                    held = c.psql("select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint / 1048576 "
                                  "from pg_replication_slots").strip()
                    behind.append((waiting, int(held or 0)))

            threading.Thread(target=sample, daemon=True).start()
            lsn0 = c.psql("select pg_current_wal_lsn()").strip()
            t0 = time.monotonic()
            c.run_as_owner([str(pgbench), "-c", "4", "-T", str(seconds), *conn], timeout=seconds + 60)
            elapsed = time.monotonic() - t0
            done.set()
            written = float(c.psql(f"select pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}') / (16*1024*1024)").strip())
            state = json.loads((work / "state" / "walstream" / "pitr.state.json").read_text())
        finally:
            streamer.terminate()
            streamer.wait(60)
    return {"seconds": round(elapsed, 1), "segments_written": round(written, 1),
            "segments_stored": state["segments_stored"], "stored_per_second": round(state["segments_stored"] / elapsed, 2),
            "waiting_files_and_slot_MiB_every_10s": behind, "last_error": state["last_error"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=40)
    ap.add_argument("--pgbench-seconds", type=int, default=0)
    ap.add_argument("--stream", action="store_true", help="also run the pgbench load with wal = \"stream\"")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="posterity-walbench-"))
    work.chmod(0o755)
    try:
        recipient = generate_identity(work / "key.txt")
        config = work / "posterity.toml"
        config.write_text(f'[repository]\nurl = "file://{work / "repo"}"\n[encryption]\nrecipients = ["{recipient}"]\n'
                          '[sources.pitr]\nkind = "postgres-physical"\ndsn = "postgresql://localhost/postgres"\n')
        subprocess.run([str(VENV / "posterity"), "-c", str(config), "init"], check=True, capture_output=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
        if args.pushes:
            for label, r in bench_latency(args.pushes, work, config).items():
                print(f"{label:<40} p50 {r['p50'] * 1000:6.0f} ms  p99 {r['p99'] * 1000:6.0f} ms  "
                      f"max {r['max'] * 1000:6.0f} ms  cpu {r['cpu_per_push'] * 1000:5.0f} ms/push")
        if args.pgbench_seconds:
            if os.geteuid() == 0:  # the pushes above ran as root; PostgreSQL archives as postgres
                subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
            print("pgbench -c 4:", bench_pgbench(args.pgbench_seconds, work, config))
        if args.pgbench_seconds and args.stream:
            print("pgbench -c 4, wal = stream:", bench_pgbench_stream(args.pgbench_seconds, work, config, 1.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
