"""Throwaway PostgreSQL clusters.

A :class:`TempCluster` runs ``initdb`` into a private temporary directory, starts a
postmaster listening on ``127.0.0.1`` (plus a Unix socket in its own directory) and
removes everything again on :meth:`TempCluster.cleanup`.  It is used by the test
suite, by the demo command and by restore drills.

PostgreSQL refuses to run as root.  When the current process is root, the server
binaries are run as the ``postgres`` OS user and the cluster directory is owned by
that user; otherwise everything runs as the current user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from .errors import SourceTimeout, ToolMissing
from .localpg import binaries, owner, server
from .localpg.ports import free_port, port_is_free

__all__ = ["ClusterError", "TempCluster", "find_bin_dir", "free_port"]

INSTALL_HINT = binaries.INSTALL_HINT


class ClusterError(Exception):
    """A throwaway cluster could not be created, started, stopped or queried."""


def find_bin_dir(version: int | None = None) -> Path:
    """Locate a directory holding ``initdb``, ``pg_ctl``, ``postgres`` and friends
    (``localpg.binaries.find_server_bin_dir``, as a ``ClusterError``)."""
    try:
        return binaries.find_server_bin_dir(version)
    except ToolMissing as exc:
        raise ClusterError(f"{exc.message}; {exc.hint}") from None


def _conf_value(value: str) -> str:
    """Quote a postgresql.conf value unless it is a plain number/identifier."""
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?[a-zA-Z]*|[A-Za-z_][A-Za-z0-9_]*", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class TempCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1.

    ``base_dir`` is the *parent* directory: a fresh private sub-directory is created
    inside it (by default under the system temp dir) and removed by :meth:`cleanup`.
    When running as root that directory is owned by the ``postgres`` OS user, so the
    parent must be traversable by that user.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        base_dir: Path | None = None,
        port: int | None = None,
        version: int | None = None,
        conf: dict[str, str] | None = None,
        *,
        fsync: bool = False,
        superuser: str = "postgres",
        locale: str | None = None,
        encoding: str = "UTF8",
        start_timeout: float = 60.0,
    ) -> None:
        self.bin_dir: Path = find_bin_dir(version)
        self._parent_dir = Path(base_dir) if base_dir is not None else None
        self._port_given = port is not None
        self.port: int = port if port is not None else free_port(self.host)
        self.conf: dict[str, str] = dict(conf or {})
        self.fsync = fsync
        self.superuser = superuser
        self.locale = locale
        self.encoding = encoding
        self.start_timeout = start_timeout

        self._as_root = os.geteuid() == 0
        self._owner = self._resolve_owner()
        self._dir: Path | None = None
        self._initialized = False
        self._running = False
        self._atexit_registered = False

    # ------------------------------------------------------------------ paths

    @property
    def base_dir(self) -> Path:
        """The private directory of this cluster (data dir, socket, log)."""
        if self._dir is None:
            self._dir = self._make_dir()
        return self._dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._running

    @property
    def owner(self) -> str:
        """The OS user that owns the cluster files and runs the server."""
        return self._owner.pw_name

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        """A libpq URI, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``."""
        user = user or self.superuser
        return (
            f"postgresql://{quote(user, safe='')}@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    # ------------------------------------------------------------ OS identity

    def _resolve_owner(self) -> pwd.struct_passwd:
        who = owner.server_owner()
        if who is None:
            raise ClusterError(
                "running as root, but PostgreSQL refuses to run as root and there is no "
                f"'{owner.OWNER_WHEN_ROOT}' OS user to run it as; {INSTALL_HINT} "
                "(it creates the user) or run as an unprivileged user"
            )
        return who

    def _owner_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return owner.owner_env(self._owner, extra)

    def _make_dir(self) -> Path:
        if self._parent_dir is not None:
            self._parent_dir.mkdir(parents=True, exist_ok=True)
        path = Path(
            tempfile.mkdtemp(
                prefix="posterity-pg-",
                dir=str(self._parent_dir) if self._parent_dir is not None else None,
            )
        )
        os.chmod(path, 0o700)
        if self._as_root:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
            probe = self.run_as_owner(["test", "-w", str(path), "-a", "-x", str(path)])
            if probe.returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                raise ClusterError(
                    f"the '{self.owner}' OS user cannot reach {path}; choose a base_dir whose "
                    "parents are traversable by it (e.g. leave base_dir unset to use /tmp)"
                )
        return path

    def run_as_owner(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run a command as the OS user that owns the cluster (``localpg.owner.run_as``).

        Defaults: ``capture_output=True, text=True, check=False, cwd=<cluster dir or />``,
        ``timeout=120``; any :func:`subprocess.run` keyword may be overridden; ``env`` is merged
        over a sanitised copy of the environment (no ``PG*`` variables).
        """
        kw.setdefault("cwd", str(self._dir) if self._dir is not None else "/")
        return owner.run_as(self._owner, argv, timeout=kw.pop("timeout", 120.0), **kw)

    def _run_checked(
        self, argv: Sequence[str], what: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[Any]:
        try:
            proc = self.run_as_owner(argv, timeout=timeout)
        except ToolMissing as exc:
            raise ClusterError(f"{what}: {exc.message}; {INSTALL_HINT}") from exc
        except SourceTimeout as exc:
            raise ClusterError(f"{what}: timed out after {timeout:.0f}s{self._log_tail()}") from exc
        if proc.returncode != 0:
            raise ClusterError(
                f"{what} failed (exit {proc.returncode}): "
                f"{(proc.stderr or '').strip() or (proc.stdout or '').strip()}{self._log_tail()}"
            )
        return proc

    def _log_tail(self, lines: int = 30) -> str:
        if self._dir is None:
            return ""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- {self.log_file} (tail) ---\n{tail}" if tail else ""

    # -------------------------------------------------------------- lifecycle

    def _initdb(self) -> None:
        base = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser, "-E", self.encoding,
                "--auth=trust"]
        if not self.fsync:
            base.append("--no-sync")
        locales = [self.locale] if self.locale else ["C.UTF-8", "C"]
        errors: list[str] = []
        for loc in locales:
            proc = self.run_as_owner([*base, f"--locale={loc}"], timeout=180)
            if proc.returncode == 0:
                self.locale = loc
                return
            errors.append(f"--locale={loc}: {(proc.stderr or proc.stdout or '').strip()}")
            if self.data_dir.exists():
                self.run_as_owner(["rm", "-rf", str(self.data_dir)])
        raise ClusterError("initdb failed:\n" + "\n".join(errors))

    def _write_conf(self) -> None:
        settings: dict[str, str] = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "fsync": "on" if self.fsync else "off",
            "logging_collector": "off",
            "log_timezone": "UTC",
            "timezone": "UTC",
        }
        if not self.fsync:
            settings["synchronous_commit"] = "off"
        settings.update(self.conf)
        lines = ["", "# --- posterity TempCluster ---"]
        lines += [f"{key} = {_conf_value(str(value))}" for key, value in settings.items()]
        conf_path = self.data_dir / "postgresql.conf"
        # Appending as root keeps the file's owner (postgres) and mode unchanged.
        with conf_path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self) -> None:
        """initdb (first time only), configure and start; returns once accepting."""
        if self._running:
            return
        self.base_dir  # noqa: B018 - creates the private directory
        if not self._initialized:
            self._initdb()
            self._write_conf()
            self._initialized = True
        attempts = 1 if self._port_given else 3
        for attempt in range(attempts):
            try:
                self._pg_ctl_start()
                break
            except ClusterError:
                if attempt + 1 >= attempts or port_is_free(self.port):
                    raise
                # Someone grabbed the auto-picked port between choosing and binding.
                self.port = free_port(self.host)
                with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as fh:
                    fh.write(f"port = {self.port}\n")
        self._running = True
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True
        self._wait_accepting()

    def _pg_ctl_start(self) -> None:
        self._run_checked([str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                           "-w", "-t", str(int(self.start_timeout))], "pg_ctl start", timeout=self.start_timeout + 10)

    def _wait_accepting(self) -> None:
        last = server.wait_ready(self.bin_dir, self._owner, host=self.host, port=self.port, user=self.superuser,
                                 timeout=self.start_timeout)
        if last is not None:
            raise ClusterError(f"server did not accept connections: {last}{self._log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``); no-op if stopped."""
        if not self._running:
            return
        self._run_checked(
            [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"],
            "pg_ctl stop",
        )
        self._running = False

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash or a lost machine would stop it (its backends exit
        once they notice); the cluster then counts as stopped."""
        import signal

        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        self._running = False
        deadline = time.monotonic() + 10
        while server.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """Restart the server (picks up configuration changes)."""
        if not self._running:
            self.start()
            return
        self._run_checked([str(self.bin_dir / "pg_ctl"), "restart", "-D", str(self.data_dir), "-m", "fast", "-l",
                           str(self.log_file), "-w", "-t", str(int(self.start_timeout))], "pg_ctl restart",
                          timeout=self.start_timeout + 30)
        self._wait_accepting()

    def cleanup(self) -> None:
        """Stop the server if running and remove the cluster directory."""
        try:
            if self._running:
                try:
                    self.stop("fast")
                except ClusterError:
                    self.stop("immediate")
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            self._initialized = False
            self._running = False
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False

    def _atexit_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cleanup()

    def __enter__(self) -> TempCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<TempCluster {self.host}:{self.port} {state} dir={self._dir}>"

    # ------------------------------------------------------------------ SQL

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through ``psql -X -v ON_ERROR_STOP=1 -At`` and return its stdout.

        The SQL is fed on stdin, so several statements (including ones that cannot
        run inside a transaction block, like ``CREATE DATABASE``) are allowed.
        """
        try:
            proc = server.psql(self.bin_dir, self._owner, host=self.host, port=self.port, dbname=dbname,
                               user=self.superuser, sql=sql, flags=("-X", "-v", "ON_ERROR_STOP=1", "-At", "-q"),
                               env={"PGCONNECT_TIMEOUT": "10"}, timeout=600, switch_user=False)
        except ToolMissing as exc:
            raise ClusterError(f"psql not found: {exc.message}; {INSTALL_HINT}") from exc
        except SourceTimeout as exc:
            raise ClusterError(f"psql on {dbname}: {exc.message}") from exc
        if proc.returncode != 0:
            raise ClusterError(
                f"psql failed (exit {proc.returncode}) on {dbname}: {proc.stderr.strip()}"
            )
        return proc.stdout

