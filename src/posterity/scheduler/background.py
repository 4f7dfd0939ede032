"""Long-running tasks the daemon keeps going beside its cron jobs.

Each task is a callable taking a ``threading.Event``; it runs in its own thread until the
event is set (SIGTERM) and should return promptly then. A task that raises is logged and
restarted 30 s later. Continuous WAL archiving (point-in-time recovery) registers here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def tasks(ctx: Any) -> list[Callable[[threading.Event], None]]:
    return []
