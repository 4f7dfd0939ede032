"""A file whose read fails after its tar header was written is named (issue 15).

The command-line case, with a real file whose read fails (``/sys/class/net/lo/speed``), is
``tests/test_source_contract.py::test_a_file_that_cannot_be_read_is_named``; it fails at byte
0. A disk whose sector fails halfway through a file cannot be made here, so this reads a file
object that fails after a few bytes, as a bad sector does, to prove the offset is the file's.
"""

from __future__ import annotations

import errno
import io

import pytest

from posterity.errors import DumpFailed
from posterity.sources.files.source import FileReadFailed, _ExactReader


class FailsAfter(io.RawIOBase):
    """``good`` bytes of a file, then EIO, as a bad sector gives."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError(errno.EIO, "Input/output error")
        n = min(self.left, size if size > 0 else self.left, 2)  # short reads, as a pipe or a slow disk
        self.left -= n
        return b"x" * n


def test_a_read_failing_midway_names_the_file_the_member_and_the_offset() -> None:
    reader = _ExactReader(FailsAfter(5), 64, "/etc/posters-science/app.toml", "etc/posters-science/app.toml")
    with pytest.raises(FileReadFailed) as caught:
        reader.read(64)
    err = caught.value
    assert isinstance(err, DumpFailed) and err.exit_code == 5
    assert err.message == (
        "Reading /etc/posters-science/app.toml (stored as etc/posters-science/app.toml) failed at byte 5 of 64: "
        "Input/output error (errno 5); the tar was stopped and nothing was committed."
    )
    assert "dmesg" in err.hint and "exclude" in err.hint
    assert isinstance(err.__cause__, OSError) and err.__cause__.errno == errno.EIO
