"""Posterity caps glibc's malloc arenas (a parallel restore's threads otherwise each keep a heap
of freed 8 MiB buffers: 194 vs 152 MiB peak RSS on the 2.37 GB benchmark, issue #16)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Eight threads each malloc() once (glibc gives a new thread a new arena while under the cap),
# then malloc_info() lists the heaps; prints their count.
PROBE = r"""
import ctypes, ctypes.util, re, sys, tempfile, threading
from posterity.malloc_arenas import cap_malloc_arenas
if sys.argv[1] == "cap":
    assert cap_malloc_arenas()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
go = threading.Barrier(8)
def work():
    go.wait()
    p = libc.malloc(4096)
    go.wait()  # all eight hold memory at once: none can borrow another's arena
    libc.free(p)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(len(re.findall(r'<heap nr="', open(f.name).read())))
"""


def _heaps(mode: str) -> int:
    env = {k: v for k, v in __import__("os").environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, env=env)
    if out.returncode != 0 and "malloc_info" in out.stderr:
        pytest.skip("not glibc")
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_the_cap_keeps_threads_to_two_arenas():
    assert _heaps("free") > 2  # without the cap, eight threads get heaps of their own
    assert _heaps("cap") <= 2


def test_the_command_line_caps_the_arenas_first(monkeypatch):
    from posterity import malloc_arenas
    from posterity.cli import main as cli_main

    calls: list[int] = []
    monkeypatch.setattr(malloc_arenas, "cap_malloc_arenas", lambda: calls.append(1) or True)
    try:
        cli_main.main(["--version"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert calls == [1]


def test_a_users_malloc_arena_max_wins(monkeypatch):
    from posterity.malloc_arenas import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
