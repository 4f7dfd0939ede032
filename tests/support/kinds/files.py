"""Configuration files under the Source contract."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.filestree import make_tree, snapshot

from .base import Kind, Store, by_hand_script, run_script

READ_FAILS = "/sys/class/net/lo/speed"  # a regular file (4096 bytes by stat) whose read fails: EINVAL


class Files(Kind):
    """Configuration files: a tree with modes, owners, nanosecond mtimes, links and names
    beyond 100 bytes (tests/support/filestree.py)."""

    id = "files"
    source = "config"
    failure_words = (f"Reading {READ_FAILS} (stored as {READ_FAILS[1:]}) failed", "Invalid argument")

    def __init__(self, root: Path, store: Store | None = None) -> None:
        super().__init__(root, store)
        # The walk is sorted by path: a tree that sorts before /sys is streamed before the
        # file that fails (dump_fails_midway), so that failure comes midway. /dev/shm is a
        # tmpfs made for such files.
        shm = Path("/dev/shm")
        self.live = Path(tempfile.mkdtemp(prefix="posterity-contract-", dir=shm)) if os.access(shm, os.W_OK) else root
        self.base = self.live / "live"
        self.roots = make_tree(self.base)
        (self.base / "etc" / "posters-science" / "big.bin").write_bytes(os.urandom(3 << 20))
        self.dest = root / "restored"
        self.configure({"kind": "files", "paths": self.roots})
        self.ok("init")

    def data(self) -> Any:
        return snapshot(Path("/"), self.roots)

    def destroy(self) -> None:
        shutil.rmtree(self.base)
        assert not any(Path(r).exists() for r in self.roots[:2])

    def assert_nothing_restored(self) -> None:
        left = sorted(str(p) for p in self.dest.rglob("*")) if self.dest.exists() else []
        assert left == [], left

    def restore_args(self) -> list[str]:
        return ["--to", str(self.dest)]

    def restored(self) -> Any:
        return snapshot(self.dest, self.roots)

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # A file the kernel lists as 4096 bytes but refuses to read (EINVAL), after the tree:
        # the tar is streaming when the read fails, as on a disk with a bad sector.
        try:
            with open(READ_FAILS, "rb") as fh:
                fh.read(10)
            pytest.skip(f"{READ_FAILS} reads without error on this host")
        except FileNotFoundError:
            pytest.skip(f"{READ_FAILS} does not exist on this host")
        except OSError:
            pass
        if not all(r < READ_FAILS for r in self.roots):
            pytest.skip(f"the tree ({self.base}) does not sort before {READ_FAILS}: the failure would come first")
        self.configure({"kind": "files", "paths": [*self.roots, READ_FAILS]})
        try:
            yield
        finally:
            self.configure({"kind": "files", "paths": self.roots})

    def by_hand(self, commands: list[str], work: Path) -> Any:
        assert len(commands) == 1, commands
        out = work / "by-hand"
        run_script(by_hand_script(commands, self.repo, self.p.key, DIR=str(out)), work, {"REPO": str(self.repo)})
        return snapshot(out, self.roots)

    def close(self) -> None:
        if self.live != self.root:
            shutil.rmtree(self.live, ignore_errors=True)
