"""A local PostgreSQL server: ``pg_ctl``, waiting until it accepts connections, SQL via psql.

Everything runs as the cluster's OS user through :func:`owner.run_as`, bounded, with its
errors in the tree (``ToolMissing``, ``SourceTimeout``); a program that ran and failed is
returned (``CompletedProcess``) for the caller to word in its own terms.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .owner import run_as


def pg_ctl(bin_dir: Path, owner: pwd.struct_passwd, args: Sequence[str], *, timeout: float,
           **kw: Any) -> subprocess.CompletedProcess[Any]:
    """``pg_ctl ARGS`` as ``owner`` (e.g. ``start -D … -l … -w``)."""
    return run_as(owner, [str(bin_dir / "pg_ctl"), *args], timeout=timeout, what=f"pg_ctl {args[0]}", **kw)


def stop(bin_dir: Path, owner: pwd.struct_passwd, data_dir: Path, *, mode: str = "fast",
         timeout: float = 120.0) -> subprocess.CompletedProcess[Any]:
    """``pg_ctl stop -m MODE -w`` (smart, fast or immediate)."""
    return pg_ctl(bin_dir, owner, ["stop", "-D", str(data_dir), "-m", mode, "-w"], timeout=timeout)


def wait_ready(bin_dir: Path, owner: pwd.struct_passwd, *, host: str, port: int, user: str | None = None,
               timeout: float = 60.0) -> str | None:
    """Poll ``pg_isready`` until the server accepts connections: None when it does, else its
    last answer once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    last = ""
    argv = [str(bin_dir / "pg_isready"), "-h", host, "-p", str(port), "-d", "postgres", "-t", "2"]
    if user:
        argv += ["-U", user]
    while time.monotonic() < deadline:
        # pg_isready only knocks: no switch of user, only the clean environment.
        proc = run_as(owner, argv, timeout=30, switch=False)
        if proc.returncode == 0:
            return None
        last = (proc.stdout + proc.stderr).strip()
        time.sleep(0.05)
    return last or "no answer"


def psql(bin_dir: Path, owner: pwd.struct_passwd, *, host: str | Path, port: int, dbname: str = "postgres",
         user: str | None = None, sql: str | None = None, commands: Sequence[str] = (),
         flags: Sequence[str] = ("-X", "-At"), timeout: float = 600.0, switch_user: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run SQL with psql: ``sql`` fed on stdin (several statements, ``CREATE DATABASE`` too), or
    each of ``commands`` as a ``-c``. Over TCP (``host``) or the Unix socket (a directory).
    ``switch_user``: run as ``owner`` (peer login over the socket), else as ourselves."""
    argv = [str(bin_dir / "psql"), *flags, "-h", str(host), "-p", str(port), "-d", dbname]
    if user:
        argv += ["-U", user]
    for c in commands:
        argv += ["-c", c]
    if sql is not None:
        argv += ["-f", "-"]
    return run_as(owner, argv, timeout=timeout, what="psql", input=sql, env=env, switch=switch_user)


def postmaster_alive(data_dir: Path) -> bool:
    """Whether the postmaster named in ``postmaster.pid`` lives."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts; any other error: no)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
