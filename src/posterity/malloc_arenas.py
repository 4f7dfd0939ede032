"""Cap glibc's malloc arenas, so that parallel streams do not each grow a heap of their own.

glibc gives threads their own heaps ("arenas", up to 8 per core). A parallel restore reads
large archives as 8 MiB ranged GETs on a pool of threads, and every thread's freed 8 MiB
buffers stay in its own arena instead of being reused by the next: measured on the 2.37 GB
benchmark database (``bench/restore_rss.py``), a ``--jobs 2`` restore peaked at 194 MiB of
resident memory as shipped and at 152 MiB with ``MALLOC_ARENA_MAX=2`` (issue #16's goal:
< 200 MiB at any ``--jobs``). The environment variable is read only when the process starts;
``mallopt(M_ARENA_MAX)`` applies to arenas not created yet, so calling it first thing in the
command line's ``main`` (before any worker thread exists) has the same effect.

Posterity's threads mostly wait on I/O or run zstd/age with the GIL released in C; two arenas
leave them enough to allocate without contention. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc malloc.h
ARENAS = 2


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap the arenas at ``arenas`` unless ``MALLOC_ARENA_MAX`` says otherwise; True if applied."""
    if "MALLOC_ARENA_MAX" in os.environ:  # the user's (or glibc's own reading of it) wins
        return False
    try:
        # The process's own symbols (libc is loaded already): no ldconfig run as
        # ctypes.util.find_library would do, so the command line starts no slower.
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
