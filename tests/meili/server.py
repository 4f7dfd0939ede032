"""An in-process Meilisearch stand-in for tests (no Meilisearch binary can be installed here).

It speaks the HTTP API of the Meilisearch ``version`` it is given (rules in ``versions.py``) closely enough for backup and restore
code: Bearer auth with a master key and derived API keys, asynchronous tasks processed by one
worker thread, documents with nested fields and ``_vectors``, settings with real defaults,
index swaps, V6 dumps in the real layout and snapshots.

    with MeiliTestServer(dump_dir=tmp_path / "dumps") as meili:
        httpx.post(f"{meili.url}/dumps", headers={"Authorization": "Bearer masterKey"})

See README-style notes in ``tests/meili/__init__.py`` for what differs from the real engine.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .archive import (
    MeiliStartupError,
    data_dir_exists,
    load_data_dir,
    read_dump,
    read_snapshot,
    save_data_dir,
)
from .routes import Api, Request
from .store import MeiliError, Store, derive_key
from .tasks import TaskQueue, injected_error, task_view
from .versions import Behaviour

__all__ = ["MeiliStartupError", "MeiliTestServer"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive + small writes would hit delayed ACKs
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        return body

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        try:
            body = self._read_body()
        except (OSError, ValueError, zlib.error) as exc:
            status, payload = 400, MeiliError(400, "malformed_payload", str(exc)).body()
        else:
            req = Request(
                method=self.command,
                path=unquote(parts.path).rstrip("/") or "/",
                params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            status, payload = self.server.meili.api.handle(req)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], meili: MeiliTestServer) -> None:
        self.meili = meili
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)


class MeiliTestServer:
    """A Meilisearch server on 127.0.0.1 behaving like ``version`` (see ``versions.py``), for tests.

    ``data_dir`` plays ``--db-path`` (state is saved there on ``stop()`` and loaded again on
    ``start()``); ``dump_dir``/``snapshot_dir`` play ``--dump-dir``/``--snapshot-dir``;
    ``import_dump``/``import_snapshot`` play ``--import-dump``/``--import-snapshot`` and are
    refused (``MeiliStartupError``) when the database already exists, unless the matching
    ``ignore_*`` flag is set, like the real CLI options.
    """

    def __init__(
        self,
        master_key: str | None = "masterKey",
        data_dir: Path | None = None,
        dump_dir: Path | None = None,
        snapshot_dir: Path | None = None,
        version: str = "1.12.0",
        import_dump: Path | None = None,
        import_snapshot: Path | None = None,
        task_delay: float = 0.0,
        *,
        port: int = 0,
        ignore_missing_dump: bool = False,
        ignore_dump_if_db_exists: bool = False,
        ignore_missing_snapshot: bool = False,
        ignore_snapshot_if_db_exists: bool = False,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="meili-test-")
            base = Path(self._tmp.name)
            data_dir = base / "data.ms"
        else:
            base = Path(data_dir).parent
        self.master_key = master_key
        self.data_dir = Path(data_dir)
        self.dump_dir = Path(dump_dir) if dump_dir is not None else base / "dumps"
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else base / "snapshots"
        self.version = version
        self.behaviour = Behaviour(version)
        self.import_dump = Path(import_dump) if import_dump is not None else None
        self.import_snapshot = Path(import_snapshot) if import_snapshot is not None else None
        self.task_delay = task_delay
        self.port = port
        self.ignore_missing_dump = ignore_missing_dump
        self.ignore_dump_if_db_exists = ignore_dump_if_db_exists
        self.ignore_missing_snapshot = ignore_missing_snapshot
        self.ignore_snapshot_if_db_exists = ignore_snapshot_if_db_exists
        self.store = Store(self.behaviour.default_features())
        self.queue = TaskQueue(self)
        self.api = Api(self)
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def _open_database(self) -> None:
        exists = data_dir_exists(self.data_dir)
        if self.import_dump is not None and self.import_snapshot is not None:
            raise MeiliStartupError("--import-dump and --import-snapshot are mutually exclusive")
        for path, missing_ok, exists_ok, what, reader in (
            (self.import_snapshot, self.ignore_missing_snapshot,
             self.ignore_snapshot_if_db_exists, "snapshot",
             lambda p: read_snapshot(p, self.store, self.version)),
            (self.import_dump, self.ignore_missing_dump, self.ignore_dump_if_db_exists,
             "dump", lambda p: read_dump(p, self.store)),
        ):  # fmt: skip
            if path is None:
                continue
            if not path.exists():
                if missing_ok:
                    continue
                raise MeiliStartupError(f"{what} `{path}` does not exist")
            if exists:
                if exists_ok:
                    break
                raise MeiliStartupError(
                    f"database already exists at {self.data_dir.resolve()}, try to delete it "
                    "or rename it"
                )
            reader(path)
            return
        if exists:
            load_data_dir(self.store, self.data_dir, self.version)
        elif self.master_key is not None:
            self.store.create_default_keys()

    def start(self) -> MeiliTestServer:
        if self._http is not None:
            return self
        self._open_database()
        save_data_dir(self.store, self.data_dir, self.version)
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._http = _HTTPServer(("127.0.0.1", self.port), self)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.queue.start()
        return self

    def stop(self) -> None:
        """Stop serving; enqueued and interrupted tasks stay in the saved queue."""
        if self._http is None:
            return
        self._http.shutdown()
        for conn in list(self._http.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._http.server_close()
        self.queue.stop()
        with self.store.lock:
            save_data_dir(self.store, self.data_dir, self.version)
        self._http = None

    def close(self) -> None:
        """Stop and delete the temporary directory, if this server made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def restart(self, **overrides: Any) -> MeiliTestServer:
        """Stop this server and start a new one on the same data dir (and port, if free).

        ``overrides`` may change any constructor argument (e.g. ``version`` or
        ``import_dump``). The new server takes over this one's temporary directory.
        """
        self.stop()
        kwargs: dict[str, Any] = {
            "master_key": self.master_key,
            "data_dir": self.data_dir,
            "dump_dir": self.dump_dir,
            "snapshot_dir": self.snapshot_dir,
            "version": self.version,
            "task_delay": self.task_delay,
            "port": self.port,
        }
        kwargs.update(overrides)
        new = MeiliTestServer(**kwargs)
        new._tmp, self._tmp = self._tmp, None
        try:
            return new.start()
        except OSError:  # the old port is taken: any port will do
            new.port = 0
            return new.start()

    def __enter__(self) -> MeiliTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("MeiliTestServer is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def snapshot_path(self) -> Path:
        """Where a snapshot lands: named after the last component of ``data_dir`` (--db-path)."""
        return self.snapshot_dir / self.behaviour.snapshot_name(self.data_dir.name)

    # ---- keys

    def key_value(self, uid: str) -> str:
        """The API key string of key ``uid`` (HMAC-SHA256 of the uid with the master key)."""
        if self.master_key is None:
            raise RuntimeError("no master key: API keys are disabled")
        return derive_key(uid, self.master_key)

    def _default_key(self, name: str) -> str:
        with self.store.lock:
            for key in self.store.keys.values():
                if key["name"] == name:
                    return self.key_value(key["uid"])
        raise KeyError(name)

    @property
    def admin_key(self) -> str:
        return self._default_key("Default Admin API Key")

    @property
    def search_key(self) -> str:
        return self._default_key("Default Search API Key")

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the master key (empty without one)."""
        return {"Authorization": f"Bearer {self.master_key}"} if self.master_key else {}

    # ---- test hooks

    def fail_next(
        self,
        task_type: str,
        code: str = "internal",
        message: str | None = None,
        error_type: str | None = None,
    ) -> None:
        """Make the next task of ``task_type`` fail with this error (queue several by calling
        again)."""
        self.queue.fail_next(task_type, injected_error(code, message, error_type))

    def stall(self, *task_types: str) -> None:
        """Hold tasks of these types (all types if none given) in ``processing`` until
        ``unstall()``. A stalled task can still be canceled through ``/tasks/cancel``."""
        self.queue.stall(task_types or ("*",))

    def unstall(self) -> None:
        self.queue.unstall()

    @contextlib.contextmanager
    def stalled(self, *task_types: str) -> Iterator[None]:
        self.stall(*task_types)
        try:
            yield
        finally:
            self.unstall()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no task is enqueued or processing."""
        if not self.queue.wait_idle(timeout):
            raise TimeoutError("Meilisearch test server still has tasks after timeout")

    def wait_task(self, uid: int, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for task ``uid`` to finish and return its public view."""
        deadline = time.monotonic() + timeout
        with self.queue.cond:
            while True:
                task = self.store.tasks.get(uid)
                if task is None:
                    raise KeyError(uid)
                if task["status"] in ("succeeded", "failed", "canceled"):
                    return task_view(task)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"task {uid} is still {task['status']}")
                self.queue.cond.wait(remaining)

    def task(self, uid: int) -> dict[str, Any]:
        with self.store.lock:
            return task_view(self.store.tasks[uid])
