"""How an operation reports progress: a bar in the CLI, nothing in the daemon or a test.

Shared by every operation (backup, restore, verify, drill, points), so none of them imports
another just for this protocol.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, label: str, total: int | None) -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass
