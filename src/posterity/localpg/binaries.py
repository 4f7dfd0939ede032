"""Where PostgreSQL's programs are: one search for the server tools and the client tools.

Server tools (``initdb``, ``pg_ctl``, ``postgres`` together): ``$POSTERITY_PG_BINDIR``;
``/usr/lib/postgresql/<version>/bin`` when a version is asked for; ``pg_config --bindir``;
the newest ``/usr/lib/postgresql/*/bin``; ``initdb`` on ``$PATH``.

A client tool (``psql``, ``pg_dump``, ``pg_ctl``…) for a server of major N: ``bin_dir`` when
set; else the oldest installed major >= N (a newer client reads an older server, never the
reverse); else the newest installed; else ``$PATH``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import ToolMissing

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "install postgresql: apt-get install postgresql"
DEBIAN_ROOT = Path("/usr/lib/postgresql")


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in SERVER_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def installed(name: str) -> list[tuple[int, Path]]:
    """``(major, path)`` of every ``/usr/lib/postgresql/<major>/bin/<name>``, oldest first."""
    out: list[tuple[int, Path]] = []
    if DEBIAN_ROOT.is_dir():
        for d in DEBIAN_ROOT.iterdir():
            if d.name.isdigit() and (d / "bin" / name).is_file():
                out.append((int(d.name), d / "bin" / name))
    return sorted(out)


def find_server_bin_dir(version: int | None = None) -> Path:
    """A directory holding ``initdb``, ``pg_ctl``, ``postgres`` and friends (see the module doc)."""
    override = os.environ.get("POSTERITY_PG_BINDIR")
    if override:
        path = Path(override)
        if _has_server_binaries(path):
            return path
        raise ToolMissing(f"POSTERITY_PG_BINDIR={override} does not contain {', '.join(SERVER_BINARIES)}",
                          hint="Point POSTERITY_PG_BINDIR at a PostgreSQL bin folder, or unset it.")
    if version is not None:
        path = DEBIAN_ROOT / str(version) / "bin"
        if _has_server_binaries(path):
            return path
        raise ToolMissing(f"PostgreSQL {version} server binaries not found in {path}",
                          hint=f"install postgresql: apt-get install postgresql-{version}")
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10,
                                 check=True).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(sorted(DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for path in candidates:
        if _has_server_binaries(path):
            return path
    raise ToolMissing("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found "
                      "(looked in pg_config --bindir, /usr/lib/postgresql/*/bin and $PATH)", hint=INSTALL_HINT)


def find_binary(name: str, server_major: int | None = None, bin_dir: Path | None = None) -> Path:
    """The client program to use: ``bin_dir``, else the version that matches or exceeds the server."""
    if bin_dir:
        p = Path(bin_dir) / name
        if p.is_file():
            return p
        raise ToolMissing(f"{name} is not in {bin_dir}.", hint="Fix bin_dir, or remove it to use the installed tools.")
    candidates = installed(name)
    if server_major is not None:
        fitting = [c for c in candidates if c[0] >= server_major]
        if fitting:
            return fitting[0][1]
    if candidates:
        return candidates[-1][1]
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ToolMissing(f"{name} is not installed.", hint="Install the PostgreSQL client: apt-get install postgresql-client.")
