"""``restore pitr`` and the OS user the restored cluster runs as (``localpg``).

The restored directory is owned by, and its server (with ``restore_command``) runs as, the
PostgreSQL OS user (``postgres`` when we are root, else ourselves). Before anything is
changed, that user must be able to read posterity's config and identity and run posterity;
after extraction, ``pg_verifybackup`` runs as that user too. Every program here goes
through ``localpg.run_as``: bounded, its timeout converted into the error tree.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import sys
from pathlib import Path

from ...errors import RestoreFailed, RestoreTargetError, SourceTimeout
from ...localpg import find_binary, run_as, server_owner

READ_CHECK_TIMEOUT = 30
VERSION_TIMEOUT = 60
VERIFY_TIMEOUT = 24 * 3600  # pg_verifybackup reads every file of the cluster once


def os_owner() -> pwd.struct_passwd:
    """The OS user that will own and run the restored cluster (``postgres`` when root)."""
    owner = server_owner()
    if owner is None:
        raise RestoreTargetError("Running as root, but there is no 'postgres' OS user to own the restored cluster.",
                                 hint="Install PostgreSQL (it creates the user), or run as the user that runs it.")
    return owner


def posterity_command() -> str:
    """How restore_command runs posterity, as shell words: ``$POSTERITY_EXECUTABLE`` verbatim
    (it may be a wrapper with arguments), else the ``posterity`` beside this Python."""
    if os.environ.get("POSTERITY_EXECUTABLE"):
        return os.environ["POSTERITY_EXECUTABLE"]
    beside = Path(sys.executable).parent / "posterity"
    return shlex.quote(str(beside) if beside.is_file() else shutil.which("posterity") or "posterity")


def check_readable_by(owner: pwd.struct_passwd, paths: list[Path]) -> None:
    """restore_command runs as the PostgreSQL user: it must read the config and identity, and run posterity."""
    if os.geteuid() == owner.pw_uid:
        return
    for p in paths:
        # our environment and folder, as before the adapter: only the user changes
        proc = run_as(owner, ["test", "-r", str(p)], timeout=READ_CHECK_TIMEOUT, env=dict(os.environ), cwd=None)
        if proc.returncode != 0:
            raise RestoreTargetError(
                f"The '{owner.pw_name}' OS user cannot read {p}, which restore_command (`posterity wal fetch`, run "
                "by PostgreSQL) needs; nothing was changed.",
                hint=f"Let it read the file (e.g. chgrp {owner.pw_name} {p} && chmod g+r {p}) and every folder above it.")
    command = f"{posterity_command()} --version"
    try:
        ran = run_as(owner, ["sh", "-c", command], timeout=VERSION_TIMEOUT, env=dict(os.environ))
    except SourceTimeout as exc:
        raise RestoreTargetError(f"{command!r}, run as '{owner.pw_name}', did not finish within {VERSION_TIMEOUT} s; "
                                 "nothing was changed.", hint="Check that posterity starts for that user (try the "
                                 "command by hand with runuser).") from exc
    if ran.returncode != 0:
        raise RestoreTargetError(
            f"The '{owner.pw_name}' OS user cannot run posterity ({command!r} failed: "
            f"{(ran.stderr or ran.stdout).strip()[:200]}); restore_command would fail. Nothing was changed.",
            hint="Install posterity where that user can run it (its Python too), or set POSTERITY_EXECUTABLE to a "
                 "command it can run.")


def verify_files(target: Path, major: int, bin_dir: Path | None, owner: pwd.struct_passwd) -> str:
    """``pg_verifybackup -n`` over the extracted directory, as its owner."""
    tool = find_binary("pg_verifybackup", major, bin_dir)
    try:
        proc = run_as(owner, [str(tool), "-n", "-q", str(target)], timeout=VERIFY_TIMEOUT, env=dict(os.environ),
                      cwd=None)
    except SourceTimeout as exc:
        raise RestoreFailed(f"pg_verifybackup did not finish within {VERIFY_TIMEOUT // 3600} h on {target}.",
                            hint="The directory is extracted; check the disk, or run pg_verifybackup by hand.") from exc
    if proc.returncode != 0:
        raise RestoreFailed(f"pg_verifybackup found damage in {target}: {(proc.stderr or proc.stdout).strip()[:500]}")
    return "pg_verifybackup: every file matches backup_manifest"
