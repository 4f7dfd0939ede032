"""Data offsets restored into piped pg_dump archives: the patched archive must be what
pg_dump itself writes to a seekable file, and must restore the same data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from posterity.demo.sample_data import fingerprint
from posterity.sources.postgres import archive_toc
from posterity.sources.postgres.archive_toc import add_data_offsets


def pg_env(cluster) -> dict[str, str]:
    return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}


def dumps(sample_db, tmp_path: Path) -> tuple[Path, Path]:
    env = pg_env(sample_db.cluster)
    bin_dir = sample_db.cluster.bin_dir
    piped = tmp_path / "piped.pgdump"
    seekable = tmp_path / "seekable.pgdump"
    with open(piped, "wb") as out:
        subprocess.run(f"{bin_dir}/pg_dump -Fc -Z0 {sample_db.name} | cat", shell=True, stdout=out, env=env, check=True)
    subprocess.run([f"{bin_dir}/pg_dump", "-Fc", "-Z0", "-f", str(seekable), sample_db.name], env=env, check=True)
    return piped, seekable


def differing_positions(a: bytes, b: bytes) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


@pytest.mark.parametrize("path", ["search", "search-tiny-blocks", "walk"])
def test_patched_archive_equals_what_pg_dump_writes_when_seekable(sample_db, tmp_path, monkeypatch, path):
    if path == "search-tiny-blocks":
        # Markers then straddle read blocks: the carried tail must find them all the same.
        original = archive_toc._search
        monkeypatch.setattr(archive_toc, "_search", lambda fh, needle, start: original(fh, needle, start, block=5))
    if path == "walk":
        # The exact walk, also over a large object (binary payload with NUL bytes).
        monkeypatch.setattr(archive_toc, "_find_blocks", lambda *a: None)
        sample_db.cluster.psql("select lo_from_bytea(0, decode('00000000000100ff', 'hex'))", dbname=sample_db.name)
    piped, seekable = dumps(sample_db, tmp_path)
    before = piped.read_bytes()
    assert add_data_offsets(piped) > 0
    after, wanted = piped.read_bytes(), seekable.read_bytes()
    assert len(after) == len(wanted)
    # Only the header's creation time may differ from pg_dump's own seekable archive.
    assert differing_positions(after, wanted) == [] or max(differing_positions(after, wanted)) < 120
    assert after != before


def test_patched_archive_restores_in_parallel_to_the_same_data(sample_db, tmp_path):
    piped, _ = dumps(sample_db, tmp_path)
    assert add_data_offsets(piped) > 0
    cluster = sample_db.cluster
    target = f"{sample_db.name}_toc"
    env = pg_env(cluster)
    try:
        subprocess.run([f"{cluster.bin_dir}/createdb", target], env=env, check=True)
        subprocess.run([f"{cluster.bin_dir}/pg_restore", "--exit-on-error", "-j", "2", "-d", target, str(piped)],
                       env=env, check=True)
        assert fingerprint(cluster.dsn(target)) == fingerprint(sample_db.dsn)
    finally:
        cluster.psql(f'drop database if exists "{target}" with (force)')


def test_unfamiliar_files_are_left_untouched(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"PGDMP" + bytes([9, 9, 0]) + os.urandom(100))
    before = junk.read_bytes()
    assert add_data_offsets(junk) == 0
    assert junk.read_bytes() == before
    text = tmp_path / "plain.sql"
    text.write_text("create table t();\n")
    assert add_data_offsets(text) == 0
