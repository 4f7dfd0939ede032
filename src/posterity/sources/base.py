"""What a source is: something that produces named byte streams and takes them back.

A ``Source`` has ``check()`` (connectivity, versions, permissions; fails fast with a hint)
and ``dump()``, which yields ``Artifact`` objects one at a time. The caller consumes each
artifact's ``stream`` to the end and then calls ``finish()``, which waits for the producing
process and raises (``DumpFailed``) if it did not succeed — so a partial stream is never
committed. ``facts()`` returns what the manifest records about the source.
Restore is per kind (its options differ) and lives beside each source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar


@dataclass
class Artifact:
    name: str
    kind: str
    stream: IO[bytes]
    expected_size: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[], None] = lambda: None
    abort: Callable[[], None] = lambda: None
    # Called from another thread when the backup is cancelled (deadline, SIGTERM, daemon
    # stop): stop the producer now (kill its process) so a blocked read ends. Must not
    # wait or close the stream; ``abort`` does that afterwards in the reading thread.
    cancel: Callable[[], None] = lambda: None


class Source(ABC):
    kind: ClassVar[str]

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config

    @abstractmethod
    def check(self) -> dict[str, Any]:
        """Connect, check versions and permissions; return facts. Raise a SourceError."""

    @abstractmethod
    def dump(self) -> Iterator[Artifact]:
        """Yield the artifacts of one backup, one at a time."""

    def facts(self) -> dict[str, Any]:
        return {}

    def bind(self, repo: Any) -> None:  # noqa: B027 - optional hook
        """Called with the Repository before ``check()``, for sources that need it (a base
        backup waits until its WAL is in the repository's WAL archive)."""

    def by_hand(self, manifest: Any) -> list[str]:
        """Shell commands that restore this backup without Posterity."""
        return []
