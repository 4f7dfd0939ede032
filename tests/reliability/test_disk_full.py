"""A full disk while a parallel restore stages the dump (--jobs 2 --staging-dir on a tmpfs
this test mounts).

Two ways to run out: the staging folder is too small from the start (refused before
anything is written), and the disk fills up while the dump is being staged (another writer
takes the space mid-way). Each time: exit 11 with the folder named and a hint, no staged
file left, the half-restored database dropped; and with space back, the same restore works.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

import pytest
from tests.reliability.harness import Setup, database_exists, unique

from posterity.demo import fingerprint, load_sample


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root or CAP_SYS_ADMIN"
        )


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def big_db(pg_cluster):
    """~25 MB of dump: large enough that staging it takes a moment, small enough for CI."""
    name = unique("big")
    pg_cluster.psql(f'CREATE DATABASE "{name}"')
    dsn = pg_cluster.dsn(name)
    try:
        load_sample(dsn, posters=50)
        pg_cluster.psql(
            "CREATE TABLE filler (id int PRIMARY KEY, body text);"
            "INSERT INTO filler SELECT i, (SELECT string_agg(md5(random()::text || i || g), '')"
            " FROM generate_series(1, 32) g) FROM generate_series(1, 24000) i;",
            dbname=name,
        )
        yield dsn, fingerprint(dsn)
    finally:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore(s: Setup, target: str, staging: Path):
    return s.run(
        "restore",
        "db",
        "latest",
        "--to-database",
        target,
        "--jobs",
        "2",
        "--staging-dir",
        str(staging),
    )


def test_staging_folder_too_small_is_refused_before_writing(tmp_path, big_db, pg_cluster):
    dsn, _ = big_db
    s = Setup(tmp_path / "env", f"file://{tmp_path / 'repo'}", dsn)
    s.init()
    s.backup()
    staging = tmp_path / "small"
    mount_tmpfs(staging, "4m")
    try:
        target = unique("nospace")
        r = restore(s, target, staging)
        assert r.code == 11, r
        assert (
            f"MiB in {staging}, only 4 MiB free" in r.err
            and "hint: Free space, point --staging-dir" in r.err
        ), r
        assert list(staging.iterdir()) == []
        assert not database_exists(pg_cluster, target)
    finally:
        umount(staging)


def test_disk_filling_up_while_staging(tmp_path, big_db, pg_cluster):
    dsn, expected = big_db
    s = Setup(tmp_path / "env", f"file://{tmp_path / 'repo'}", dsn)
    s.init()
    s.backup()
    staging = tmp_path / "staging"
    mount_tmpfs(staging, "48m")
    hog = staging / "other-writer.bin"
    try:
        stop = threading.Event()

        def take_the_space_once_staging_starts() -> None:
            while not stop.is_set():
                if any(p.name.startswith("posterity-restore-") for p in staging.iterdir()):
                    # Another writer takes every byte left.
                    with open(hog, "wb", buffering=0) as fh, contextlib.suppress(OSError):
                        while True:
                            fh.write(bytes(1 << 20))
                    return
                time.sleep(0.001)

        hogger = threading.Thread(target=take_the_space_once_staging_starts, daemon=True)
        hogger.start()
        target = unique("filled")
        r = restore(s, target, staging)
        stop.set()
        hogger.join(timeout=5)
        assert hog.exists(), "the other writer never ran: staging was not observed"
        assert r.code == 11, r
        assert (
            f"The disk holding {staging} filled up while staging the dump; the staged file was removed."
            in r.err
        ), r
        assert (
            "hint: Free space, point --staging-dir at a larger disk, or restore with --jobs 1."
            in r.err
        ), r
        assert [p.name for p in staging.iterdir()] == [hog.name]
        assert not database_exists(pg_cluster, target)

        hog.unlink()  # space is back: the same command works, and restores the exact data
        r = restore(s, target, staging)
        assert r.code == 0, r
        try:
            assert fingerprint(pg_cluster.dsn(target)) == expected
            assert list(staging.iterdir()) == []
        finally:
            pg_cluster.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    finally:
        umount(staging)
