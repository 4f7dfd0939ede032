"""The bytes-only object store interface.

A store moves bytes to and from one place and knows nothing of backups, keys' meaning,
encryption or manifests (those live in ``repository``). Keep it this small: every method
here must be implemented by every store, and the contract suite in
``tests/test_storage_contract.py`` runs over all of them.

Contracts:
- ``put(key, data, if_absent=True)`` writes the whole object or nothing; readers never see
  a partial object. With ``if_absent`` it raises ``ObjectExists`` when the key exists
  (atomically where the store supports conditional writes; see each store's notes).
- ``get(key)`` streams the object in chunks; ``ObjectNotFound`` when it does not exist.
- ``list(prefix)`` yields every object under ``prefix`` (in no guaranteed order).
- ``delete(keys)`` is idempotent: deleting a missing key is not an error.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

MiB = 1024 * 1024
# R2: parts between 5 MiB and 4.995 GiB (S3: 5 GiB), at most 10,000 of them
# (https://developers.cloudflare.com/r2/platform/limits/). We aim well below the part limit
# so that a stream larger than its estimate still fits.
MIN_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB - 5 * MiB  # "5 MiB less than 5 GiB, so 4.995 GiB"
MAX_PARTS = 10_000
TARGET_PARTS = 9_000
#: The default ceiling on the part size (``[repository] max_part_size_mib``): up to four
#: parts are in memory at once while uploading.
DEFAULT_MAX_PART_SIZE = 512 * MiB
#: An estimate is multiplied by this before the part size is chosen.
SIZE_MARGIN = 2


def choose_part_size(expected_size: int | None, max_part_size: int = MAX_PART_SIZE, *, what: str = "stream") -> int:
    """Part size for a stream of about ``expected_size`` bytes (whole MiB, equal parts).

    R2 requires every part but the last to have the same size, so the size is fixed before
    the upload starts; it grows with the expected size so 10,000 parts always suffice even
    if the stream turns out twice as large as expected. A stream whose estimate would need
    parts above ``max_part_size`` is refused here, before the first byte is sent.
    """
    if not expected_size or expected_size <= 0:
        return MIN_PART_SIZE
    wanted = math.ceil(expected_size * SIZE_MARGIN / TARGET_PARTS)
    wanted = math.ceil(wanted / MiB) * MiB
    ceiling = min(max_part_size, MAX_PART_SIZE)
    if wanted > ceiling:
        from ..errors import StreamTooLarge

        raise StreamTooLarge(
            f"{what} is estimated at {expected_size / 2**30:.1f} GiB; with a {SIZE_MARGIN}x margin it needs "
            f"parts of {wanted // MiB} MiB, above the ceiling of {ceiling // MiB} MiB "
            f"({MAX_PARTS:,} parts at most). Nothing was uploaded.",
            hint="Raise [repository] max_part_size_mib (up to 5115; the upload holds about four parts in "
            "memory), or split the source.",
        )
    return max(MIN_PART_SIZE, wanted)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None


class ObjectStore(ABC):
    """Bytes in, bytes out, for one location (a bucket prefix, a folder)."""

    #: A human description of where the objects live (never includes credentials).
    location: str = ""
    #: True when ``put(if_absent=True)`` is atomic for streamed (multipart) objects too.
    atomic_create_large: bool = True
    #: The largest part ``choose_part_size`` may pick for this store (a configured ceiling).
    max_part_size: int = DEFAULT_MAX_PART_SIZE

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        *,
        if_absent: bool = True,
        part_size: int | None = None,
    ) -> int:
        """Store ``data`` under ``key``; returns the number of bytes written."""

    @abstractmethod
    def get(self, key: str) -> Iterator[bytes]:
        """Stream the object's bytes."""

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get(key))

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and time, or None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove the objects; missing ones are ignored."""

    def check(self) -> None:
        """Fail fast with a clear error when the store cannot be used (bucket, credentials)."""
        self.stat("posterity.json")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
