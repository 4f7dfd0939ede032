"""Per-kind adapters for the Source contract suite (tests/test_source_contract.py).

Each adapter owns one project (posterity.toml, key, a file:// repository) with one source of
its kind holding known data, and knows, for that kind only: how to read the data back for a
comparison, how to destroy it, the ``restore`` options that bring it back, how to make the
next dump fail midway (a real failure of the producer, not a mock), and how to run the
by-hand commands ``posterity show`` prints with the standard tools (age, zstd, pg_restore,
tar, jq/curl).

The suite drives Posterity only through its command line (``run_in_process``), so it keeps
working whatever the code behind the commands looks like.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.meili import MeiliTestServer
from tests.meili.store import MeiliError
from tests.support.filestree import make_tree, snapshot
from tests.support.install import installed_posterity
from tests.support.pitr import (
    AS_ROOT,
    chown_owner,
    posterity_for_postgres,
    stop_restored,
    wait_archived,
)
from tests.support.project import InProcessRun, Project, make_project, run_in_process

from posterity.demo import fingerprint, load_sample
from posterity.pgcluster import TempCluster, free_port

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path("/usr/lib/postgresql").is_dir() else Path()
READ_FAILS = "/sys/class/net/lo/speed"  # a regular file (4096 bytes by stat) whose read fails: EINVAL


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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.p: Project = make_project(root / "proj", f"file://{root / 'repo'}")

    # -- the command line ------------------------------------------------------------------
    def run(self, *args: str) -> InProcessRun:
        return run_in_process(self.p, *args)

    def ok(self, *args: str) -> InProcessRun:
        r = self.run(*args)
        assert r.code == 0, f"posterity {' '.join(args)} exited {r.code}\n{r.out}\n{r.err}"
        return r

    @property
    def repo(self) -> Path:
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

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def by_hand(self, commands: list[str], work: Path) -> Any:
        """Run ``commands`` (from ``show``) with standard tools; the data they recovered."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- postgres


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


class Postgres(Kind):
    """A logical backup, one pg_dump archive (``split=False``) or a schema archive plus data
    archives dumped in parallel from one snapshot (``split=True``: jobs 2, part size 0)."""

    source = "db"
    failure_words = ("pg_dump", "lock timeout")

    def __init__(self, root: Path, cluster: TempCluster, split: bool) -> None:
        super().__init__(root)
        self.id = "postgres-split" if split else "postgres"
        self.split = split
        self.cluster = cluster
        self.name = f"contract_{uuid.uuid4().hex[:10]}"
        self.others: list[str] = []
        cluster.psql(f'CREATE DATABASE "{self.name}"')
        load_sample(self.dsn(), posters=40)
        self.body: dict[str, Any] = {"kind": "postgres", "dsn": self.dsn()}
        if split:
            self.body.update(jobs=2, part_size_mib=0)
        self.configure(dict(self.body))
        self.ok("init")

    def dsn(self, name: str | None = None) -> str:
        return self.cluster.dsn(name or self.name)

    def data(self) -> Any:
        return fingerprint(self.dsn())

    def destroy(self) -> None:
        self.cluster.psql(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        assert self.cluster.psql(f"select count(*) from pg_database where datname = '{self.name}'").strip() == "0"

    def restore_args(self) -> list[str]:
        return ["--to-database", self.name]

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # pg_dump streams part of its archive, then fails as it does on a lock timeout. The
        # split layout dumps its schema whole and fails in the data archives.
        cut = (
            f'{PG_BIN}/pg_dump "$@" | head -c 20000\n'
            'echo "pg_dump: error: query failed: canceling statement due to lock timeout" >&2\nexit 1\n'
        )
        body = f'case "$*" in *--section=data*) {cut};; esac\nexec {PG_BIN}/pg_dump "$@"\n' if self.split else (
            f'if [ "$1" = "--version" ]; then exec {PG_BIN}/pg_dump --version; fi\n{cut}'
        )
        folder = fake_bin(self.root / f"bin-{uuid.uuid4().hex[:6]}", "pg_dump", body)
        self.configure({**self.body, "bin_dir": str(folder)})
        try:
            yield
        finally:
            self.configure(dict(self.body))

    def by_hand(self, commands: list[str], work: Path) -> Any:
        target = f"{self.name}_hand"
        self.others.append(target)
        # The roles exist already in this cluster: the globals line would only repeat them.
        commands = [c for c in commands if "psql -X -d postgres" not in c]
        assert len(commands) == (3 if self.split else 1), commands
        script = by_hand_script(commands, self.repo, self.p.key, NEWDB=target)
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(self.cluster.port), "PGUSER": "postgres",
               "PATH": f"{PG_BIN}:{os.environ['PATH']}", "REPO": str(self.repo)}
        run_script(script, work, env)
        return fingerprint(self.dsn(target))

    def close(self) -> None:
        for name in [self.name, *self.others]:
            self.cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- files


class Files(Kind):
    """Configuration files: a tree with modes, owners, nanosecond mtimes, links and names
    beyond 100 bytes (tests/support/filestree.py)."""

    id = "files"
    source = "config"
    failure_words = ("Writing the tar failed", "Invalid argument")

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # The walk is sorted by path: a tree that sorts before /sys is streamed before the
        # file that fails (dump_fails_midway), so that failure comes midway. /dev/shm is a
        # tmpfs made for such files.
        shm = Path("/dev/shm")
        self.live = Path(tempfile.mkdtemp(prefix="posterity-contract-", dir=shm)) if os.access(shm, os.W_OK) else root
        self.base = self.live / "live"
        self.roots = make_tree(self.base)
        (self.base / "etc" / "posters-science" / "big.bin").write_bytes(os.urandom(3 << 20))
        self.dest = root / "restored"
        self.configure({"kind": "files", "paths": self.roots})
        self.ok("init")

    def data(self) -> Any:
        return snapshot(Path("/"), self.roots)

    def destroy(self) -> None:
        shutil.rmtree(self.base)
        assert not any(Path(r).exists() for r in self.roots[:2])

    def restore_args(self) -> list[str]:
        return ["--to", str(self.dest)]

    def restored(self) -> Any:
        return snapshot(self.dest, self.roots)

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # A file the kernel lists as 4096 bytes but refuses to read (EINVAL), after the tree:
        # the tar is streaming when the read fails, as on a disk with a bad sector.
        try:
            with open(READ_FAILS, "rb") as fh:
                fh.read(10)
            pytest.skip(f"{READ_FAILS} reads without error on this host")
        except FileNotFoundError:
            pytest.skip(f"{READ_FAILS} does not exist on this host")
        except OSError:
            pass
        if not all(r < READ_FAILS for r in self.roots):
            pytest.skip(f"the tree ({self.base}) does not sort before {READ_FAILS}: the failure would come first")
        self.configure({"kind": "files", "paths": [*self.roots, READ_FAILS]})
        try:
            yield
        finally:
            self.configure({"kind": "files", "paths": self.roots})

    def by_hand(self, commands: list[str], work: Path) -> Any:
        assert len(commands) == 1, commands
        out = work / "by-hand"
        run_script(by_hand_script(commands, self.repo, self.p.key, DIR=str(out)), work, {"REPO": str(self.repo)})
        return snapshot(out, self.roots)

    def close(self) -> None:
        if self.live != self.root:
            shutil.rmtree(self.live, ignore_errors=True)


# --------------------------------------------------------------------------- meilisearch

MASTER = "masterKey-contract-0123456789"
POSTERS = [{"id": i, "title": f"Poster {i}: the {['deep', 'quiet', 'odd'][i % 3]} signal", "year": 2000 + i % 7,
            "meta": {"tags": ["ml", f"t{i % 4}"], "score": i / 3}} for i in range(1, 31)]
AUTHORS = [{"sku": f"a-{i}", "name": f"Author {i}"} for i in range(5)]
SETTINGS = {"searchableAttributes": ["title", "meta.tags"], "filterableAttributes": ["year"],
            "sortableAttributes": ["year"], "stopWords": ["the"], "synonyms": {"poster": ["placard"]}}


class Meilisearch(Kind):
    """Two indexes (documents, settings, primary keys) in the in-repo test server, exported
    page by page (page size 7, so an export is several requests)."""

    id = "meilisearch"
    source = "search"
    failure_words = ("posters/documents/fetch", "disk I/O error while reading")

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.server = MeiliTestServer(master_key=MASTER, data_dir=root / "meili" / "data.ms",
                                      dump_dir=root / "meili" / "dumps", snapshot_dir=root / "meili" / "snapshots")
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=20)
        self.wait(self.http.post("/indexes", json={"uid": "posters", "primaryKey": "id"}))
        self.wait(self.http.patch("/indexes/posters/settings", json=SETTINGS))
        self.wait(self.http.post("/indexes/posters/documents", json=POSTERS))
        self.wait(self.http.post("/indexes", json={"uid": "authors", "primaryKey": "sku"}))
        self.wait(self.http.post("/indexes/authors/documents", json=AUTHORS))
        self.p.env = {"TEST_MEILI_KEY": MASTER}
        self.configure({"kind": "meilisearch", "url": self.server.url, "api_key": "${TEST_MEILI_KEY}",
                        "modes": ["export"], "task_timeout": 20, "page_size": 7})
        self.ok("init")

    def wait(self, r: httpx.Response, http: httpx.Client | None = None) -> None:
        assert r.status_code == 202, r.text
        uid = r.json()["taskUid"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            task = (http or self.http).get(f"/tasks/{uid}").json()
            if task["status"] in ("succeeded", "failed", "canceled"):
                assert task["status"] == "succeeded", task
                return
            time.sleep(0.01)
        raise AssertionError(f"task {uid} did not finish")

    def state(self, http: httpx.Client) -> dict[str, Any]:
        out = {}
        for index in http.get("/indexes", params={"limit": 1000}).json()["results"]:
            uid = index["uid"]
            docs = http.post(f"/indexes/{uid}/documents/fetch", json={"limit": 10_000}).json()["results"]
            out[uid] = {"primaryKey": index["primaryKey"], "settings": http.get(f"/indexes/{uid}/settings").json(),
                        "documents": sorted(docs, key=lambda d: str(d.get("id", d.get("sku"))))}
        return out

    def data(self) -> Any:
        return self.state(self.http)

    def destroy(self) -> None:
        for uid in ("posters", "authors"):
            self.wait(self.http.delete(f"/indexes/{uid}"))
        assert self.state(self.http) == {}

    def restore_args(self) -> list[str]:
        return ["--all"]

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # The server answers the first pages of the export, then fails as on a storage error.
        routes = list(self.server.api.routes)
        for i, (method, pattern, handler, action) in enumerate(routes):
            if method == "POST" and "documents/fetch" in pattern.pattern:
                served: list[int] = []

                def failing(req: Any, handler: Any = handler, served: list[int] = served) -> Any:
                    if req.args["uid"] == "posters":
                        served.append(1)
                        if len(served) > 2:
                            raise MeiliError(500, "internal", "disk I/O error while reading the index", "internal")
                    return handler(req)

                self.server.api.routes[i] = (method, pattern, failing, action)
                break
        else:
            raise AssertionError("the test server has no documents/fetch route")
        try:
            yield
        finally:
            self.server.api.routes = routes
        assert len(served) > 2, "the export never reached the failing page"

    def by_hand(self, commands: list[str], work: Path) -> Any:
        # Into a fresh, empty server: curl and jq as printed, then wait for its tasks.
        assert len(commands) == 2 and all("curl" in c for c in commands), commands
        with MeiliTestServer(master_key=MASTER, data_dir=work / "fresh.ms") as fresh:
            script = by_hand_script(commands, self.repo, self.p.key)
            run_script(script, work, {"REPO": str(self.repo), "MEILI_URL": fresh.url, "MEILI_MASTER_KEY": MASTER})
            fresh.wait_idle()
            with httpx.Client(base_url=fresh.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=20) as c:
                failed = c.get("/tasks", params={"statuses": "failed"}).json()["results"]
                assert failed == [], failed
                return self.state(c)

    def close(self) -> None:
        self.http.close()
        self.server.stop()


# --------------------------------------------------------------------------- postgres-physical


class Physical(Kind):
    """A base backup (pg_basebackup) plus WAL archived by the cluster's archive_command — the
    installed ``posterity wal push``, run by the postgres OS user as in production — from a
    cluster shared by the module (``archiving`` fixture). The data: one sample database.

    The shared cluster is not destroyed: ``destroy`` drops the database, and the restore
    recovers a new data directory to the LSN taken just before the drop, starts it and
    compares the database there.
    """

    id = "postgres-physical"
    source = "pitr"
    failure_words = ("pg_basebackup", "server closed the connection unexpectedly")

    def __init__(self, root: Path, cluster: TempCluster) -> None:
        # The postgres OS user reads the config and key and writes WAL into the repository:
        # a world-traversable folder (pytest's tmp_path is not).
        self.work = Path(tempfile.mkdtemp(prefix="posterity-contract-pitr-"))
        self.work.chmod(0o755)
        super().__init__(self.work)
        self.cluster = cluster
        self.name = f"contract_{uuid.uuid4().hex[:10]}"
        self.ports: list[int] = []
        self.dirs: list[Path] = []
        self.lsn = ""
        cluster.psql(f'CREATE DATABASE "{self.name}"')
        load_sample(cluster.dsn(self.name), posters=20)
        self.body: dict[str, Any] = {"kind": "postgres-physical", "dsn": cluster.dsn(user="replicator"),
                                     "archive_wait": 30}
        self.configure(dict(self.body))
        # restore_command (run by PostgreSQL as its user) runs the installed posterity too.
        self.p.env = {"POSTERITY_EXECUTABLE": str(installed_posterity())}
        chown_owner(self.p.config, self.p.key)
        self.ok("init")
        (self.repo / "wal").mkdir(exist_ok=True)
        if AS_ROOT:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.repo)], check=True)
        command = f"{posterity_for_postgres()} -c {self.p.config} wal push --source {self.source} %p"
        cluster.psql(f"alter system set archive_command = '{command}'")
        cluster.psql("select pg_reload_conf()")

    def configure(self, body: dict[str, Any]) -> None:
        super().configure(body)
        chown_owner(self.p.config)

    def data(self) -> Any:
        return fingerprint(self.cluster.dsn(self.name))

    def destroy(self) -> None:
        # Some WAL after the backup's last segment, so the target is inside the next one.
        self.cluster.psql("select pg_logical_emit_message(false, 'posterity-contract', 'before the drop')")
        self.lsn = self.cluster.psql("select pg_current_wal_insert_lsn()").strip()
        wait_archived(self.cluster)  # the WAL up to the target is in the repository
        self.cluster.psql(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        assert self.cluster.psql(f"select count(*) from pg_database where datname = '{self.name}'").strip() == "0"

    def restore_args(self) -> list[str]:
        port = free_port()
        self.ports.append(port)
        dest = self.work / f"restored-{len(self.dirs)}"
        self.dirs.append(dest)
        return ["--to-directory", str(dest), "--start", "--port", str(port), "--target-lsn", self.lsn]

    def restored(self) -> Any:
        return fingerprint(f"postgresql://postgres@127.0.0.1:{self.ports[-1]}/{self.name}")

    @contextlib.contextmanager
    def dump_fails_midway(self) -> Iterator[None]:
        # pg_basebackup streams part of the tar, then loses its connection.
        real = PG_BIN / "pg_basebackup"
        body = (
            f'if [ "$1" = "--version" ]; then exec {real} --version; fi\n'
            f'{real} "$@" | head -c 300000\n'
            'echo "pg_basebackup: error: could not read COPY data: server closed the connection unexpectedly" >&2\n'
            "exit 1\n"
        )
        folder = fake_bin(self.work / f"bin-{uuid.uuid4().hex[:6]}", "pg_basebackup", body)
        self.configure({**self.body, "bin_dir": str(folder)})
        try:
            yield
        finally:
            self.configure(dict(self.body))

    def by_hand(self, commands: list[str], work: Path) -> Any:
        """The four lines ``show`` prints: extract the tar and check it (run as printed), copy
        every archived WAL file from the start segment on into pg_wal (the printed template,
        filled per file), then recovery.signal, restore_command = 'false' and pg_ctl start."""
        assert len(commands) == 4, commands
        extract, check, wal_line, start = commands
        target = self.work / f"by-hand-{len(self.dirs)}"
        self.dirs.append(target)
        env = {"REPO": str(self.repo), "PATH": f"{PG_BIN}:{os.environ['PATH']}"}
        run_script(by_hand_script([extract, check], self.repo, self.p.key, DIR=str(target)), work, env)

        assert wal_line.startswith("for each WAL file from "), wal_line
        first, template = wal_line.removeprefix("for each WAL file from ").split(" on: ", 1)
        copies = []
        for seg in sorted((self.repo / "wal" / self.source).glob("*/*.zst.age")):
            name = seg.name.removesuffix(".zst.age")
            if name[:24] >= first and len(name) == 24:
                copies.append(template.replace("<timeline>", seg.parent.name).replace("<file>", name))
        assert copies, f"no archived WAL from {first} in {self.repo / 'wal'}"
        run_script(by_hand_script(copies, self.repo, self.p.key, DIR=str(target)), work, env)

        assert "recovery.signal" in start and "restore_command = 'false'" in start and "pg_ctl -D DIR start" in start
        port = free_port()
        (target / "recovery.signal").touch()
        with (target / "postgresql.auto.conf").open("a") as fh:
            fh.write(f"restore_command = 'false'\narchive_mode = off\nport = {port}\n"
                     "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        if AS_ROOT:
            subprocess.run(["chown", "-R", "postgres:postgres", str(target)], check=True)
        prefix = ["runuser", "-u", "postgres", "--"] if AS_ROOT else []
        proc = subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(target), "-l", str(target / "log"),
                               "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90, check=False)
        assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\n{(target / 'log').read_text()[-2000:]}"
        return fingerprint(f"postgresql://postgres@127.0.0.1:{port}/{self.name}")

    def close(self) -> None:
        self.cluster.psql("alter system set archive_command = '/bin/true'")
        self.cluster.psql("select pg_reload_conf()")
        for d in self.dirs:
            stop_restored(d)
        self.cluster.psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        shutil.rmtree(self.work, ignore_errors=True)
