"""Snapshot and dump files that Meilisearch writes on its own host, read as artifacts.

Posterity asks the server for a snapshot or a dump over HTTP, then reads the file from
``snapshot_dir``/``dump_dir``: the folders must exist and be readable here, and the file must
not change while it is read (a second snapshot replacing it is caught by its size).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any, cast

from ...errors import DumpFailed, SourceError
from ..base import Artifact


class DirectoryError(SourceError):
    """A snapshot or dump folder is not usable."""


def check_dir(path: Path, what: str, mode: str) -> None:
    option = "--snapshot-dir" if mode == "snapshot" else "--dump-dir"
    if not path.exists():
        raise DirectoryError(
            f"The {what} folder {path} does not exist on this host.",
            hint=f"Set {mode}_dir to Meilisearch's {option} (Posterity must run on the Meilisearch host "
            f"for mode {mode}), or remove {mode!r} from modes and use export.",
        )
    if not path.is_dir():
        raise DirectoryError(f"The {what} folder {path} is not a folder.", hint=f"Set {mode}_dir to Meilisearch's {option}.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DirectoryError(
            f"The {what} folder {path} is not readable by this user.",
            hint="Give the user running Posterity read access (e.g. add it to the meilisearch group).",
        )


class CountingFile(io.RawIOBase):
    """The file as read, counting bytes: ``file_artifact``'s ``finish`` compares them with the size."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.fh.read(len(b))
        b[: len(data)] = data
        self.n += len(data)
        return len(data)

    def close(self) -> None:
        self.fh.close()
        super().close()


def open_output(path: Path, what: str) -> IO[bytes]:
    option = "--snapshot-dir" if what == "snapshot" else "--dump-dir"
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DirectoryError(
            f"Meilisearch reported the {what} done, but {path} does not exist.",
            hint=f"{what}_dir must be the {option} of the Meilisearch server at url, on this host.",
        ) from None
    except PermissionError:
        raise DirectoryError(
            f"{path} is not readable by this user.",
            hint="Give the user running Posterity read access to Meilisearch's files (e.g. its group).",
        ) from None


def file_artifact(name: str, kind: str, fh: IO[bytes], size: int, facts: dict[str, Any],
                  path: Path) -> Artifact:
    counting = CountingFile(fh)

    def finish() -> None:
        counting.close()
        if counting.n != size:
            raise DumpFailed(f"{path} changed while it was read ({counting.n} bytes read, {size} expected).",
                             hint="Another snapshot or dump may have replaced it; run the backup again.")

    return Artifact(name=name, kind=kind, stream=cast(IO[bytes], counting), expected_size=size, facts=facts,
                    finish=finish, abort=counting.close)
