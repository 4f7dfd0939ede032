"""Per-process CPU seconds (user+sys) for the benchmarks, read from /proc.

CPU seconds are far less sensitive to a shared machine than wall time: a contender that
waits for a core still uses the same CPU once it gets one.

- ``tree_cpu(pid)``: a process, its live descendants, and the descendants it already reaped
  (``cutime``/``cstime``). For the PostgreSQL postmaster that is every backend, the ones that
  served pg_dump included (a backend's CPU lands in the postmaster's ``cutime`` when it exits).
- ``Watch``: polls a running process every 50 ms and keeps, per thread, the last CPU seen, so
  a run can be split into Posterity's threads (main, the Rust uploader's ``tokio-*`` threads,
  the other Python/zstd threads: encoders and zstd workers) and its child processes (pg_dump).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

TCK = os.sysconf("SC_CLK_TCK")


def _stat(path: str) -> list[str] | None:
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (2nd field) may contain spaces: split after its closing parenthesis
    return [text[: text.index(" ")], text[text.index("(") + 1: text.rindex(")")], *text[text.rindex(")") + 2:].split()]


def _cpu(f: list[str], children: bool = False) -> float:
    # fields after the name: state=2, ppid=3 … utime=13, stime=14, cutime=15, cstime=16 (1-based in proc(5): 14–17)
    t = int(f[13]) + int(f[14])
    if children:
        t += int(f[15]) + int(f[16])
    return t / TCK


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat(f"/proc/{d}/stat")
            if f:
                kids.setdefault(int(f[3]), []).append(int(d))
    return kids


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and its reaped children."""
    kids = _children_map()
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        f = _stat(f"/proc/{p}/stat")
        if f:
            total += _cpu(f, children=(p == pid))
        todo.extend(kids.get(p, []))
    return total


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Meter:
    """CPU seconds spent during a block: in processes this one waited for (``own``), the
    PostgreSQL cluster (``pg``) and the S3 server (``s3``)."""

    def __init__(self, pg_pid: int | None, s3_pid: int | None) -> None:
        self.pg_pid, self.s3_pid = pg_pid, s3_pid
        self.result: dict[str, float] = {}

    def __enter__(self) -> Meter:
        self._c0 = children_cpu()
        self._pg0 = tree_cpu(self.pg_pid) if self.pg_pid else 0.0
        self._s30 = tree_cpu(self.s3_pid) if self.s3_pid else 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.result = {
            "own": children_cpu() - self._c0,
            "pg": (tree_cpu(self.pg_pid) - self._pg0) if self.pg_pid else 0.0,
            "s3": (tree_cpu(self.s3_pid) - self._s30) if self.s3_pid else 0.0,
        }


def run_watched(argv: list[str], env=None, out: Path | None = None) -> tuple[float, int, dict[str, float]]:
    """Run ``argv``; wall seconds, peak RSS (KiB, VmHWM) and CPU seconds by part:
    ``main``/``uploader``/``workers`` threads of the process and ``children`` (pg_dump,
    pg_restore, …), as last seen by a 50 ms poll (a thread's last < 50 ms may be missed)."""
    t = time.monotonic()
    sink = open(out, "wb") if out else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, stdout=sink)
    peak = 0
    threads: dict[int, tuple[str, float]] = {}
    kids: dict[int, float] = {}
    base = f"/proc/{proc.pid}"
    while proc.poll() is None:
        try:
            for line in Path(f"{base}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
            for tid in os.listdir(f"{base}/task"):
                f = _stat(f"{base}/task/{tid}/stat")
                if f:
                    threads[int(tid)] = (f[1], _cpu(f))
            for tid in os.listdir(f"{base}/task"):
                try:
                    ch = Path(f"{base}/task/{tid}/children").read_text().split()
                except (FileNotFoundError, ProcessLookupError):
                    continue
                for c in ch:
                    f = _stat(f"/proc/{c}/stat")
                    if f:
                        kids[int(c)] = _cpu(f, children=True)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.05)
    if out:
        sink.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with {proc.returncode}")
    parts = {"main": 0.0, "uploader": 0.0, "workers": 0.0}
    for tid, (name, cpu) in threads.items():
        key = "main" if tid == proc.pid else "uploader" if name.startswith("tokio") else "workers"
        parts[key] += cpu
    parts["children"] = sum(kids.values())
    return time.monotonic() - t, peak, parts
