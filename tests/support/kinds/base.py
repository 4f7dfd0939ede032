"""What every kind's adapter shares: the ``Kind`` interface the Source contract suite calls,
and running the by-hand commands ``posterity show`` prints."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.project import InProcessRun, Project, make_project, run_in_process

#: A repository other than the default file:// one: its URL and the [repository] settings.
Store = tuple[str, dict[str, str]]

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path("/usr/lib/postgresql").is_dir() else Path()


def by_hand_script(commands: list[str], repo: Path, key: Path, **words: str) -> str:
    """``show``'s commands as a shell script: the repository is a folder (``cat`` for
    ``rclone cat``), the identity is ``key``, and placeholders (NEWDB, DIR, …) are filled."""
    out = []
    for c in commands:
        c = c.replace('rclone cat "$REPO/', 'cat "$REPO/').replace("key.txt", str(key))
        for word, value in words.items():
            c = c.replace(word, value)
        out.append(c)
    return "\n".join(out)


def run_script(script: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"by-hand script failed ({proc.returncode}):\n{script}\n{proc.stdout}\n{proc.stderr}"


class Kind:
    """One kind of source under the contract. Subclasses fill in the kind-specific parts."""

    id = ""
    source = ""
    #: what the failed dump's error must say: what failed and why
    failure_words: tuple[str, ...] = ()
    #: the exit code of that failure (5: the source failed, errors.py)
    failure_code = 5

    def __init__(self, root: Path, store: Store | None = None) -> None:
        self.root = root
        url, extra = store if store is not None else (f"file://{root / 'repo'}", {})
        self.p: Project = make_project(root / "proj", url, **extra)

    # -- the command line ------------------------------------------------------------------
    def run(self, *args: str) -> InProcessRun:
        return run_in_process(self.p, *args)

    def ok(self, *args: str) -> InProcessRun:
        r = self.run(*args)
        assert r.code == 0, f"posterity {' '.join(args)} exited {r.code}\n{r.out}\n{r.err}"
        return r

    @property
    def repo(self) -> Path:
        """The repository's folder (file:// repositories only)."""
        assert self.p.repo_url.startswith("file://"), self.p.repo_url
        return Path(self.p.repo_url.removeprefix("file://"))

    def configure(self, body: dict[str, Any]) -> None:
        self.p.sources[self.source] = body
        self.p.write_config()

    # -- kind-specific ---------------------------------------------------------------------
    def data(self) -> Any:
        """The source's data as it is now, in a comparable form."""
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def restore_args(self) -> list[str]:
        raise NotImplementedError

    def restored(self) -> Any:
        """The data the restore produced, in the form ``data()`` returns."""
        return self.data()

    def restore_reads(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """An artifact (``show --json`` record) that ``restore_args``'s restore must read: the largest."""
        return max(manifest["artifacts"], key=lambda a: a["size"])

    def assert_nothing_restored(self) -> None:
        """After a failed restore: no partial data where ``restore_args`` pointed."""
        raise NotImplementedError

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def by_hand(self, commands: list[str], work: Path) -> Any:
        """Run ``commands`` (from ``show``) with standard tools; the data they recovered."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def fake_bin(folder: Path, tool: str, body: str) -> Path:
    """``folder`` with the real PostgreSQL client tools, except ``tool``, which runs ``body``."""
    folder.mkdir(parents=True, exist_ok=True)
    for real in PG_BIN.iterdir():
        if real.name != tool:
            (folder / real.name).symlink_to(real)
    script = folder / tool
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder
