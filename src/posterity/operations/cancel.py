"""Cooperative cancellation: deadlines, SIGTERM and daemon stops end a backup cleanly.

Why a token and not ``PyThreadState_SetAsyncExc``: an exception delivered into a thread
only fires at its next Python instruction, and a backup spends its life blocked in C (a
pipe read from ``pg_dump``, a socket write). A ``CancelToken`` instead

- records *why* the work stops (the exception to raise: ``DeadlineExceeded``,
  ``Terminated``, the daemon's ``Abandoned``),
- runs the callbacks registered by whoever holds a child process (``Artifact.cancel``:
  kill ``pg_dump``), so a thread blocked reading its pipe sees end-of-file at once, even
  when the child is stopped (SIGKILL ends a SIGSTOPped process),
- is checked between chunks (``checked(stream)``), so the pipeline raises the token's
  reason instead of storing a short payload.

The operation's own ``except BaseException`` path then does what it does on Ctrl-C:
release the lock, remove the uncommitted payloads, write the audit record.

Tokens form a tree (a daemon job's token is the parent of each backup's), and every live
token is known to ``cancel_all`` (the CLI's SIGTERM handler, the daemon's stop).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

log = logging.getLogger(__name__)

_live: weakref.WeakSet[CancelToken] = weakref.WeakSet()
_live_lock = threading.Lock()
_current = threading.local()


class CancelToken:
    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[], Any]] = []
        self._timer: threading.Timer | None = None
        with _live_lock:
            _live.add(self)
        if parent is not None:
            parent.on_cancel(lambda: self.cancel(parent.error or RuntimeError("cancelled")))

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when cancelled meanwhile."""
        return self._event.wait(seconds)

    def cancel(self, error: BaseException) -> None:
        """Stop the work: remember ``error`` (the first reason wins) and run the callbacks."""
        with self._lock:
            if self._event.is_set():
                return
            self.error = error
            self._event.set()
            callbacks = list(self._callbacks)
        for fn in callbacks:
            try:
                fn()
            except Exception:  # a callback that fails must not keep the others from running
                log.debug("cancel callback %r failed", fn, exc_info=True)

    def check(self) -> None:
        """Raise the reason if cancelled (call between chunks)."""
        if self._event.is_set() and self.error is not None:
            raise self.error

    def on_cancel(self, fn: Callable[[], Any]) -> Callable[[], None]:
        """Run ``fn`` when cancelled (at once if already); returns a function that unregisters it."""
        with self._lock:
            now = self._event.is_set()
            if not now:
                self._callbacks.append(fn)
        if now:
            fn()

        def remove() -> None:
            with self._lock:
                if fn in self._callbacks:
                    self._callbacks.remove(fn)

        return remove

    def deadline(self, seconds: float, make_error: Callable[[], BaseException]) -> None:
        """Cancel with ``make_error()`` after ``seconds`` unless ``close()`` comes first."""
        t = threading.Timer(seconds, lambda: self.cancel(make_error()))
        t.daemon = True
        t.name = "posterity-deadline"
        self._timer = t
        t.start()

    def close(self) -> None:
        """The work is over: stop the deadline timer and forget the callbacks."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._callbacks.clear()
        with _live_lock:
            _live.discard(self)

    def checked(self, stream: IO[bytes]) -> IO[bytes]:
        return _CheckedStream(stream, self)  # type: ignore[return-value]


class _CheckedStream:
    """A byte stream that raises the token's reason before a read and at end-of-file (a
    killed producer's stream ends early: that end must not pass for a complete dump)."""

    def __init__(self, raw: IO[bytes], token: CancelToken) -> None:
        self._raw = raw
        self._token = token

    def read(self, size: int = -1) -> bytes:
        self._token.check()
        data = self._raw.read(size)
        if not data:
            self._token.check()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def cancel_all(error_factory: Callable[[], BaseException]) -> int:
    """Cancel every live token (SIGTERM); returns how many there were."""
    with _live_lock:
        tokens = list(_live)
    for t in tokens:
        t.cancel(error_factory())
    return len(tokens)


def current() -> CancelToken | None:
    """The token the calling thread works under (set by ``use``), if any."""
    return getattr(_current, "token", None)


@contextmanager
def use(token: CancelToken) -> Iterator[CancelToken]:
    """Make ``token`` the calling thread's current one (operations started inside become its children)."""
    saved = current()
    _current.token = token
    try:
        yield token
    finally:
        _current.token = saved
