"""Decode one stored artifact straight into a ``pg_restore`` reading stdin.

Shared by the single-archive restore (``restore.py``) and the parallel loads of a split
backup (``parallel_restore.py``): verify → decrypt → decompress into the pipe, and a
failure named with the tail of pg_restore's own messages.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable

from ... import pipes
from ...errors import RestoreFailed
from ...repository import Repository


class Tap:
    """A file-like writer that reports every chunk it passes on to ``progress``."""

    def __init__(self, fh, progress: Callable[[int], None] | None) -> None:
        self.fh = fh
        self.progress = progress

    def write(self, b) -> int:
        n = self.fh.write(b)
        if self.progress:
            self.progress(len(b))
        return n

    def flush(self) -> None:
        self.fh.flush()


def tail(fh) -> str:
    """The last five non-empty lines a process wrote to the temporary file ``fh``."""
    fh.seek(0)
    lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-5:]) or "no message"


def stream_into(
    repo: Repository,
    art,
    identities: list,
    argv: list[str],
    env: dict[str, str],
    progress: Callable[[int], None] | None,
    *,
    what: str = "pg_restore",
    started: Callable[[subprocess.Popen], None] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> None:
    """Run ``argv`` (a pg_restore reading stdin) and feed it ``art``'s decoded bytes.

    ``started`` sees the process (so a caller can kill it); ``stopped`` says a non-zero exit
    is the caller's own doing (it killed the process) and is not reported again."""
    errf = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=errf, stdout=subprocess.DEVNULL, env=env)
    pipes.grow(proc.stdin)
    if started is not None:
        started(proc)
    assert proc.stdin is not None
    try:
        try:
            repo.read_artifact(art, Tap(proc.stdin, progress), identities)
            proc.stdin.close()
        except BrokenPipeError:
            proc.wait()
            raise RestoreFailed(f"{what} stopped early: {tail(errf)}") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0 and not (stopped is not None and stopped()):
            raise RestoreFailed(f"{what} failed (exit {rc}): {tail(errf)}")
    finally:
        errf.close()
