"""Posterity installed the way a server gets it: ``scripts/install`` into a temporary prefix.

Installed once per test process (the uv cache makes it seconds) and removed at exit. The
PITR tests run the installed ``posterity`` and give PostgreSQL its path in archive_command and
restore_command — the postgres OS user runs it exactly as in production, with no wrapper.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install"


@functools.cache
def installed_prefix() -> Path:
    """The prefix of a fresh ``scripts/install --prefix DIR --no-link`` (``DIR/bin/posterity``)."""
    prefix = Path(tempfile.mkdtemp(prefix="posterity-install-"))
    prefix.chmod(0o755)
    atexit.register(shutil.rmtree, prefix, True)
    proc = subprocess.run([str(INSTALL), "--prefix", str(prefix), "--no-link"], capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/install failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return prefix


def installed_posterity() -> Path:
    return installed_prefix() / "bin" / "posterity"
