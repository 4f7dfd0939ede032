"""Store the artifacts of one dump on several workers at once.

The dump generator starts a producer (a pg_dump) only when asked for the next artifact, so
the consumer pulls one only when a worker is free: at most ``streams`` producers, encoders
and uploads run at once. That, not ``--jobs``, bounds memory: each S3 upload holds up to
four parts (8 MiB at the sizes a part of a split dump gets) and each encoder a zstd window,
so ``streams`` is capped by ``MEMORY_BUDGET`` whatever ``--jobs`` says.

On the first failure no further artifact is pulled; those already running end (each is
bounded by its producer and its upload's timeouts), then the first error is raised.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..pipeline.budget import MEMORY_BUDGET, STREAM_MEMORY, stream_limit
from ..sources.base import Artifact

__all__ = ["MEMORY_BUDGET", "STREAM_MEMORY", "store_all", "stream_limit"]

T = TypeVar("T")

def store_all(arts: Iterator[Artifact], jobs: int, store_one: Callable[[Artifact], T]) -> list[T]:
    """``store_one`` every artifact of ``arts``, ``stream_limit(jobs)`` at a time; results in order.

    ``store_one`` must call ``abort()`` or ``finish()`` of its artifact in every case.
    """
    limit = stream_limit(jobs)
    slots = threading.BoundedSemaphore(limit)
    failed = threading.Event()
    futures: list[Future[T]] = []

    active: dict[int, Artifact] = {}  # Artifact is an unhashable dataclass

    def run(art: Artifact) -> T:
        try:
            return store_one(art)
        except BaseException:
            failed.set()
            raise
        finally:
            active.pop(id(art), None)
            slots.release()

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="posterity-store") as pool:
        try:
            while not failed.is_set():
                slots.acquire()  # a worker ends each stored or failed artifact: bounded
                if failed.is_set():
                    slots.release()
                    break
                try:
                    art = next(arts)
                except StopIteration:
                    slots.release()
                    break
                except BaseException:
                    slots.release()
                    raise
                active[id(art)] = art
                try:
                    futures.append(pool.submit(run, art))
                except BaseException:
                    slots.release()
                    art.abort()
                    raise
        except BaseException:
            # Interrupted or the dump failed: stop the running producers so their workers end
            # soon (``cancel`` only kills; each worker aborts its own artifact).
            for art in list(active.values()):
                with contextlib.suppress(Exception):
                    art.cancel()
            raise
        finally:
            # Let the running workers end before the caller cleans up (payloads, snapshot).
            for f in futures:
                f.exception()
    for f in futures:
        exc = f.exception()
        if exc is not None:
            raise exc
    return [f.result() for f in futures]
