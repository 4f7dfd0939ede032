"""The OS user a PostgreSQL cluster runs as, and running programs as that user.

PostgreSQL refuses to run as root: when we are root, a cluster we create is owned by and
runs as the ``postgres`` OS user; otherwise as ourselves. An existing data directory runs
as its owner. Programs get a clean environment: no ``PG*`` variable of ours can silently
change what libpq, psql or pg_ctl do (a connection is passed on the command line or in
``extra``), and ``HOME``/``USER``/``LOGNAME`` are the owner's when we switch user.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import SourceTimeout, ToolMissing

OWNER_WHEN_ROOT = "postgres"


def server_owner() -> pwd.struct_passwd | None:
    """Who runs a cluster we create: ourselves, or ``postgres`` when root (None: no such user)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(OWNER_WHEN_ROOT)
    except KeyError:
        return None


def owner_of(data_dir: Path) -> pwd.struct_passwd:
    """The owner of an existing data directory (who its postmaster runs as)."""
    return pwd.getpwuid(os.stat(data_dir).st_uid)


def switching(owner: pwd.struct_passwd) -> bool:
    """Whether running as ``owner`` means switching user (we are root and it is not)."""
    return os.geteuid() == 0 and owner.pw_uid != 0


def as_owner(owner: pwd.struct_passwd, *, groups: bool = False) -> dict[str, Any]:
    """``subprocess`` keywords that run a program as ``owner`` (nothing when we are it or cannot
    switch). ``groups``: with its supplementary groups (archive_command sees them), else none."""
    if os.geteuid() != 0:
        return {}
    extra = os.getgrouplist(owner.pw_name, owner.pw_gid) if groups else []
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": extra}


def owner_env(owner: pwd.struct_passwd, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without ``PG*`` settings, as ``owner`` (HOME, USER, LOGNAME) when root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if os.geteuid() == 0:
        env["HOME"] = owner.pw_dir if os.path.isdir(owner.pw_dir) else "/tmp"
        env["USER"] = env["LOGNAME"] = owner.pw_name
    if extra:
        env.update(extra)
    return env


def run_as(owner: pwd.struct_passwd, argv: Sequence[str], *, timeout: float, what: str | None = None,
           switch: bool = True, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run ``argv`` as ``owner``, bounded by ``timeout`` seconds (``switch=False``: as ourselves,
    in the owner's clean environment — for programs that only connect, like pg_isready).

    Defaults: ``capture_output=True, text=True, check=False, cwd="/"``; any ``subprocess.run``
    keyword may be given; ``env`` is merged over :func:`owner_env`. A program that is not
    there raises ``ToolMissing``, one that outlives ``timeout`` ``SourceTimeout`` (it is killed).
    """
    what = what or Path(argv[0]).name
    if "stdout" not in kw and "stderr" not in kw:
        kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("check", False)
    kw.setdefault("cwd", "/")
    kw["env"] = owner_env(owner, kw.get("env"))
    for key, value in (as_owner(owner) if switch else {}).items():
        kw.setdefault(key, value)
    try:
        return subprocess.run(list(argv), timeout=timeout, **kw)
    except FileNotFoundError as exc:
        raise ToolMissing(f"{what}: {exc}", hint="install postgresql: apt-get install postgresql") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceTimeout(f"{what} did not finish within {timeout:.0f}s.",
                            hint="It was stopped; see the server's log.") from exc
