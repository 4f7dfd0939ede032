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
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

__all__ = ["ClusterError", "TempCluster", "find_bin_dir", "free_port"]

INSTALL_HINT = "install postgresql: apt-get install postgresql"
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
_OWNER_WHEN_ROOT = "postgres"

# Environment variables that would silently change what libpq/psql/pg_ctl do.
_PG_ENV_VARS = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGDATA",
    "PGSSLMODE",
    "PGTZ",
    "PGDATESTYLE",
    "PGCLIENTENCODING",
    "PSQLRC",
)


class ClusterError(Exception):
    """A throwaway cluster could not be created, started, stopped or queried."""


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _SERVER_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_bin_dir(version: int | None = None) -> Path:
    """Locate a directory holding ``initdb``, ``pg_ctl``, ``postgres`` and friends.

    Order: ``$POSTERITY_PG_BINDIR``; ``/usr/lib/postgresql/<version>/bin`` when a
    version is requested; ``pg_config --bindir``; the newest
    ``/usr/lib/postgresql/*/bin``; ``initdb`` on ``$PATH``.
    """
    override = os.environ.get("POSTERITY_PG_BINDIR")
    if override:
        path = Path(override)
        if _has_server_binaries(path):
            return path
        raise ClusterError(
            f"POSTERITY_PG_BINDIR={override} does not contain {', '.join(_SERVER_BINARIES)}"
        )

    if version is not None:
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if _has_server_binaries(path):
            return path
        raise ClusterError(
            f"PostgreSQL {version} server binaries not found in {path}; "
            f"install postgresql: apt-get install postgresql-{version}"
        )

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for path in candidates:
        if _has_server_binaries(path):
            return path
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found "
        f"(looked in pg_config --bindir, /usr/lib/postgresql/*/bin and $PATH); {INSTALL_HINT}"
    )


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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
        if not self._as_root:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam(_OWNER_WHEN_ROOT)
        except KeyError:
            raise ClusterError(
                "running as root, but PostgreSQL refuses to run as root and there is no "
                f"'{_OWNER_WHEN_ROOT}' OS user to run it as; {INSTALL_HINT} "
                "(it creates the user) or run as an unprivileged user"
            ) from None

    def _owner_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PG_ENV_VARS}
        if self._as_root:
            env["HOME"] = self._owner.pw_dir if os.path.isdir(self._owner.pw_dir) else "/tmp"
            env["USER"] = env["LOGNAME"] = self._owner.pw_name
        if extra:
            env.update(extra)
        return env

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
        """Run a command as the OS user that owns the cluster.

        Defaults: ``capture_output=True, text=True, check=False, cwd=<cluster dir or />``.
        Any :func:`subprocess.run` keyword argument may be overridden; ``env`` is
        merged over a sanitised copy of the environment (no ``PG*`` variables).
        """
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("check", False)
        kw.setdefault("cwd", str(self._dir) if self._dir is not None else "/")
        kw["env"] = self._owner_env(kw.get("env"))
        if self._as_root:
            kw.setdefault("user", self._owner.pw_uid)
            kw.setdefault("group", self._owner.pw_gid)
            kw.setdefault("extra_groups", [])
        return subprocess.run(list(argv), **kw)

    def _run_checked(
        self, argv: Sequence[str], what: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[Any]:
        try:
            proc = self.run_as_owner(argv, timeout=timeout)
        except FileNotFoundError as exc:
            raise ClusterError(f"{what}: {exc}; {INSTALL_HINT}") from exc
        except subprocess.TimeoutExpired as exc:
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
        base = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "-E",
            self.encoding,
            "--auth=trust",
        ]
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
                if attempt + 1 >= attempts or _port_is_free(self.port):
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
        self._run_checked(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.start_timeout)),
            ],
            "pg_ctl start",
            timeout=self.start_timeout + 10,
        )

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [
                    str(self.bin_dir / "pg_isready"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    self.superuser,
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ],
                capture_output=True,
                text=True,
                env=self._owner_env(),
                check=False,
            )
            if proc.returncode == 0:
                return
            last = (proc.stdout + proc.stderr).strip()
            time.sleep(0.05)
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
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """Restart the server (picks up configuration changes)."""
        if not self._running:
            self.start()
            return
        self._run_checked(
            [
                str(self.bin_dir / "pg_ctl"),
                "restart",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.start_timeout)),
            ],
            "pg_ctl restart",
            timeout=self.start_timeout + 30,
        )
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
        argv = [
            str(self.bin_dir / "psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-q",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.superuser,
            "-d",
            dbname,
            "-f",
            "-",
        ]
        try:
            proc = subprocess.run(
                argv,
                input=sql,
                capture_output=True,
                text=True,
                env=self._owner_env({"PGCONNECT_TIMEOUT": "10"}),
                check=False,
                timeout=600,
            )
        except FileNotFoundError as exc:
            raise ClusterError(f"psql not found: {exc}; {INSTALL_HINT}") from exc
        if proc.returncode != 0:
            raise ClusterError(
                f"psql failed (exit {proc.returncode}) on {dbname}: {proc.stderr.strip()}"
            )
        return proc.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
