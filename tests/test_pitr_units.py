"""Point-in-time recovery: the pure parts (WAL names, timelines, retention, tar tap, the
lean archive_command entry's configuration), without PostgreSQL."""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from posterity.cli.walfast import LeanContext, _NotPlain
from posterity.config import loads_config
from posterity.errors import RestoreFailed
from posterity.repository import walarchive
from posterity.repository import walnames as wal
from posterity.sources.postgres.tarextract import TarExtractor
from posterity.sources.postgres.tarscan import TarTap

SEG = wal.DEFAULT_SEGMENT_SIZE


def test_names_round_trip_and_classify() -> None:
    assert wal.segment_name(1, 0x1FF) == "0000000100000001000000FF"
    assert wal.segno_of("0000000100000001000000FF") == 0x1FF
    assert wal.parse_name("00000002.history").kind == "history"
    assert wal.parse_name("000000020000000000000003.partial").timeline == 2
    assert wal.parse_name("000000010000000000000002.00000028.backup").kind == "backup"
    for bad in ("RECOVERYXLOG", "00000000.history", "000000010000000000000002.tmp", "0000000100000000000002"):
        with pytest.raises(wal.WalNameError):
            wal.parse_name(bad)
    assert wal.parse_lsn("0/3000158") == 0x3000158 and wal.format_lsn(0x1_0300_0158) == "1/3000158"
    assert wal.payload_key("pitr", "00000002.history") == "wal/pitr/00000002/00000002.history.zst.age"
    assert wal.parse_key("wal/pitr/00000001/000000010000000000000003.json")[2] == "record"  # type: ignore[index]
    assert wal.parse_key("wal/pitr/00000002/000000010000000000000003.zst.age") is None  # wrong folder


def test_recovery_reads_the_switch_segment_from_the_new_timeline() -> None:
    # Timeline 2 branched from 1 inside segment 5; timeline 3 from 2 exactly at segment 8's start.
    history3 = "1\t0/5000100\tbefore 2024-01-15\n2\t0/8000000\tno recovery target specified\n"
    chain = wal.parse_history(history3, 3)
    assert [(e.tli, e.begin, e.end) for e in chain] == [(1, 0, 0x5000100), (2, 0x5000100, 0x8000000), (3, 0x8000000, None)]
    names = wal.expected_files(chain, 3, 9)
    assert names == [wal.segment_name(1, 3), wal.segment_name(1, 4), wal.segment_name(2, 5), wal.segment_name(2, 6),
                     wal.segment_name(2, 7), wal.segment_name(3, 8), wal.segment_name(3, 9)]
    # A backup on timeline 1 that ended after the branch point cannot follow timeline 2 or 3.
    assert wal.chain_from(chain, 1, 0x5000200) is None
    assert wal.chain_from(chain, 1, 0x5000000) == chain
    assert wal.chain_from(chain, 2, 0x6000000) == chain[1:]
    assert wal.chain_from(chain, 4, 0) is None


@dataclass
class M:
    source: str
    facts: dict[str, Any] = field(default_factory=dict)
    kind: str = "postgres-physical"


def test_wal_keys_needed_keeps_everything_a_kept_base_backup_can_reach() -> None:
    keys = []
    for name in ["000000010000000000000001", "000000010000000000000002", "000000010000000000000005",
                 "000000010000000000000006.partial", "000000020000000000000004", "000000020000000000000007",
                 "00000002.history", "000000010000000000000002.00000028.backup"]:
        keys += [wal.payload_key("pitr", name), wal.record_key("pitr", name)]
    keys += [wal.payload_key("other", "000000010000000000000001"), "wal/pitr/README"]
    kept = [M("pitr", {"wal_start_segment": "000000010000000000000005"}),
            M("pitr", {"wal_start_segment": "000000020000000000000007"}),
            M("pitr", {"row_counts": {}}, kind="postgres")]
    needed = wal.wal_keys_needed(kept, keys)
    gone = wal.wal_keys_unneeded(kept, keys)
    assert needed | gone == set(keys) and not needed & gone
    names_gone = {k.split("/")[3].split(".zst")[0].removesuffix(".json") for k in gone}
    # Older than the oldest kept base on its timeline: removable; timeline 2's segment 4 is before both bases.
    assert names_gone == {"000000010000000000000001", "000000010000000000000002",
                          "000000010000000000000002.00000028.backup", "000000020000000000000004"}
    assert wal.payload_key("other", "000000010000000000000001") in needed  # a source with no kept base: keep all
    assert "wal/pitr/README" in needed and wal.payload_key("pitr", "00000002.history") in needed


def _tar(members: dict[str, bytes], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_tap_passes_bytes_through_and_captures_members(fmt: int) -> None:
    long_name = "base/16384/" + "x" * (150 if fmt != tarfile.USTAR_FORMAT else 80) + "/backup_manifest"
    members = {"backup_label": b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
               "base/1/1259": os.urandom(70_000), long_name: b"not the top-level one",
               "global/pg_control": os.urandom(8192), "backup_manifest": b'{"WAL-Ranges": []}'}
    data = _tar(members, fmt)
    tap = TarTap(io.BufferedReader(io.BytesIO(data)), {"backup_label", "global/pg_control", "backup_manifest", long_name})
    out = bytearray()
    while chunk := tap.read(777):  # odd chunk sizes cross every header boundary
        out += chunk
    assert bytes(out) == data
    assert tap.ended and tap.members == len(members)
    assert tap.captured == {k: members[k] for k in ("backup_label", "global/pg_control", "backup_manifest", long_name)}


SAMPLE = """
[repository]
url = "s3://bucket/prefix"
endpoint = "${TEST_PITR_ENDPOINT}"
access_key_id = "$${literal}"
[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
zstd_level = 7
identity_file = "/etc/posterity/key.txt"
[sources.pitr]
kind = "postgres-physical"
dsn = "postgresql://replicator@localhost/postgres"
[sources.db]
kind = "postgres"
dsn = "postgresql://localhost/db"
"""


def test_lean_entry_reads_what_the_full_loader_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PITR_ENDPOINT", "http://127.0.0.1:9000")
    path = tmp_path / "posterity.toml"
    path.write_text(SAMPLE)
    lean, full = LeanContext(path), loads_config(SAMPLE)
    assert lean.url == full.repository.url
    assert lean.store_args["endpoint"] == full.repository.endpoint == "http://127.0.0.1:9000"
    assert lean.store_args["access_key_id"] == full.repository.access_key_id.get_secret_value() == "${literal}"  # type: ignore[union-attr]
    assert lean.store_args["region"] == full.repository.region
    assert lean.stages.specs() == [{"name": "zstd", "level": 7, "checksum": True},
                                   {"name": "age", "kind": "x25519", "recipients": list(full.encryption.recipients)}]
    assert lean.identity_file == str(full.encryption.identity_file)
    assert lean.source(None) == "pitr" and lean.source("pitr") == "pitr"
    with pytest.raises(_NotPlain):
        lean.source("db")  # not a physical source: the full loader reports it properly
    monkeypatch.delenv("TEST_PITR_ENDPOINT")
    with pytest.raises(_NotPlain):
        LeanContext(path)  # an unset variable: fall back to the full loader's message
    path.write_text(SAMPLE.replace("zstd_level = 7", 'zstd_level = "7"'))
    with pytest.raises(_NotPlain):
        LeanContext(path)


@pytest.fixture(params=["stdlib", "own"])
def tar_filter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each extractor test runs with tarfile.data_filter and with the extractor's own copy of its
    rules, which Debian 12's Python 3.11.2 (no data_filter before 3.11.4) uses."""
    from posterity.sources.postgres import tarextract

    if request.param == "own":
        monkeypatch.setattr(tarextract, "_DATA_FILTER", None)
    return str(request.param)


def _feed_all(ex: TarExtractor, data: bytes, step: int = 1000) -> None:
    for i in range(0, len(data), step):
        ex.feed(data[i : i + step])
    ex.close()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_extractor_writes_exactly_what_tarfile_would(tmp_path: Path, fmt: int, tar_filter: str) -> None:
    members = {"PG_VERSION": b"15\n", "base/1/1259": os.urandom(70_000), "global/pg_control": os.urandom(8192),
               "pg_wal/": b"", "base/16384/" + "y" * 120 + "/file": b"long", "empty": b""}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o700
            else:
                info.size, info.mode = len(data), 0o600
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pg_tblspc_link")
        link.type, link.linkname = tarfile.SYMTYPE, "base/1"
        tf.addfile(link)
    dest = tmp_path / "d"
    dest.mkdir()
    ex = TarExtractor(dest)
    _feed_all(ex, buf.getvalue() + b"\0" * 4096, step=777)
    for name, data in members.items():
        if not name.endswith("/"):
            assert (dest / name).read_bytes() == data
            assert (dest / name).stat().st_mode & 0o777 == 0o600
    assert (dest / "pg_wal").is_dir() and os.readlink(dest / "pg_tblspc_link") == "base/1"
    assert ex.members == len(members) + 1


def _one(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


@pytest.mark.parametrize("info", [
    _member("../evil", size=4),
    _member("a/../../evil", size=4),
    _member("escape", tarfile.SYMTYPE, "/etc"),
    _member("escape", tarfile.SYMTYPE, "../../etc"),
    _member("dev", tarfile.CHRTYPE),
    _member("hard", tarfile.LNKTYPE, "PG_VERSION"),
], ids=["dotdot", "nested-dotdot", "abs-symlink", "rel-symlink-out", "device", "hardlink"])
def test_extractor_refuses_unsafe_members(tmp_path: Path, info: tarfile.TarInfo, tar_filter: str) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "PG_VERSION").write_text("15\n")
    with pytest.raises(RestoreFailed):
        _feed_all(TarExtractor(dest), _one(info, b"evil" if info.size else b""))
    assert sorted(p.name for p in dest.iterdir()) == ["PG_VERSION"]
    assert not (tmp_path / "evil").exists()


def test_extractor_will_not_write_through_a_symlink_on_disk(tmp_path: Path, tar_filter: str) -> None:
    dest, outside = tmp_path / "d", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "base").symlink_to(outside)
    with pytest.raises(RestoreFailed):
        _feed_all(TarExtractor(dest), _one(_member("base/file", size=4), b"evil"))
    assert list(outside.iterdir()) == []


def test_extractor_refuses_a_stream_that_ends_early(tmp_path: Path) -> None:
    data = _one(_member("big", size=100_000), os.urandom(100_000))
    ex = TarExtractor(tmp_path)
    ex.feed(data[:50_000])
    with pytest.raises(RestoreFailed, match="ended early"):
        ex.close()


def test_extractor_keeps_absolute_names_inside_the_target(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    _feed_all(TarExtractor(dest), _one(_member("/tmp/posterity-evil", size=4), b"evil"))
    assert (dest / "tmp" / "posterity-evil").read_bytes() == b"evil"
    assert not Path("/tmp/posterity-evil").exists()


# -- streaming snapshots -----------------------------------------------------------------------


def test_stream_snapshot_names() -> None:
    name = wal.stream_name("000000010000000000000007", 0x3E49)
    assert name == "000000010000000000000007.00003E49.stream"
    parsed = wal.parse_name(name)
    assert parsed.kind == "stream" and parsed.timeline == 1 and wal.stream_length(name) == 0x3E49
    assert wal.segno_of(name) == 7
    assert wal.parse_key(wal.payload_key("pitr", name)) == ("pitr", parsed, "payload")


def _keys(source: str, *names: str, records: bool = True) -> list[str]:
    keys = [wal.payload_key(source, n) for n in names]
    return keys + ([wal.record_key(source, n) for n in names] if records else [])


def test_superseded_snapshots_are_not_needed_but_the_newest_of_an_open_segment_is() -> None:
    s7a, s7b = wal.stream_name(wal.segment_name(1, 7), 0x100), wal.stream_name(wal.segment_name(1, 7), 0x900)
    s8a, s8b = wal.stream_name(wal.segment_name(1, 8), 0x100), wal.stream_name(wal.segment_name(1, 8), 0x200)
    keys = _keys("pitr", wal.segment_name(1, 6), wal.segment_name(1, 7), s7a, s7b, s8a, s8b)
    # a longer snapshot whose payload never arrived does not supersede anything
    s8c = wal.stream_name(wal.segment_name(1, 8), 0x300)
    keys.append(wal.record_key("pitr", s8c))
    gone = wal.superseded_stream_keys(keys)
    assert gone == set(_keys("pitr", s7a, s7b, s8a))  # segment 7 is archived whole; 8's 0x200 is its newest
    base = M("pitr", {"wal_start_segment": wal.segment_name(1, 6)})
    needed = wal.wal_keys_needed([base], keys)
    assert set(_keys("pitr", s8b)) <= needed and not (needed & gone)
    assert wal.record_key("pitr", s8c) in needed  # half-pushed: kept, like any record


def _listing_with(store, source: str, names: list[str]) -> None:
    import pyrage

    from posterity.pipeline import Stages

    stages = Stages(recipients=(str(pyrage.x25519.Identity.generate().to_public()),), zstd_level=1)
    for n in names:
        walarchive.WalArchive(store, source).push_bytes(n, n.encode(), stages)


def _base() -> Any:
    from posterity.repository import Manifest

    return Manifest(id="b1", source="pitr", kind="postgres-physical", started_at="2026-01-01T00:00:00+00:00",
                    finished_at="2026-01-01T00:00:01+00:00", posterity_version="t", host="h", artifacts=[],
                    facts={"wal_start_segment": wal.segment_name(1, 2), "wal_stop_segment": wal.segment_name(1, 2),
                           "stop_lsn": "0/2000100", "timeline": 1, "wal_segment_size": SEG,
                           "stop_time": "2026-01-01T00:00:01+00:00"})


def test_plan_uses_the_newest_snapshot_after_the_last_segment_only_when_it_covers_the_target() -> None:
    from posterity.sources.postgres.pitr_plan import Target, TargetBeyondArchive, plan_restore
    from posterity.storage import MemoryStore

    store = MemoryStore()
    seg3 = wal.segment_name(1, 4)
    stale = wal.stream_name(wal.segment_name(1, 3), 0x10)  # segment 3 is archived whole: ignored
    _listing_with(store, "pitr", [wal.segment_name(1, 2), wal.segment_name(1, 3), stale,
                                  wal.stream_name(seg3, 0x400), wal.stream_name(seg3, 0x800)])
    plan = plan_restore(walarchive.WalArchive(store, "pitr"), _base(), Target(), [])
    assert plan.segments[-1] == wal.segment_name(1, 3) and plan.tail == wal.stream_name(seg3, 0x800)
    covered = plan_restore(walarchive.WalArchive(store, "pitr"), _base(), Target(lsn=wal.format_lsn(4 * SEG + 0x7FF)), [])
    assert covered.tail == wal.stream_name(seg3, 0x800)
    inside = plan_restore(walarchive.WalArchive(store, "pitr"), _base(), Target(lsn=wal.format_lsn(3 * SEG + 5)), [])
    assert inside.segments[-1] == wal.segment_name(1, 3)  # its record may end in the next segment: tail kept
    assert inside.tail == wal.stream_name(seg3, 0x800)
    earlier = plan_restore(walarchive.WalArchive(store, "pitr"), _base(), Target(lsn=wal.format_lsn(2 * SEG + 5)), [])
    assert earlier.tail is None and earlier.segments[-1] == wal.segment_name(1, 2)
    with pytest.raises(TargetBeyondArchive):
        plan_restore(walarchive.WalArchive(store, "pitr"), _base(), Target(lsn=wal.format_lsn(4 * SEG + 0x800)), [])


@pytest.mark.parametrize("meanwhile", ["longer snapshot", "segment stored whole"])
def test_restore_fetches_the_current_tail_when_the_planned_snapshot_was_superseded(tmp_path: Path, meanwhile: str) -> None:
    """A running streamer replaces snapshots between the plan and the fetch: the restore takes
    the newest one (or the whole segment) instead of failing."""
    import pyrage

    from posterity.pipeline import Stages
    from posterity.sources.postgres.pitr_plan import Target, plan_restore
    from posterity.sources.postgres.pitr_restore import prefetch
    from posterity.storage import MemoryStore

    ident = pyrage.x25519.Identity.generate()
    stages = Stages(recipients=(str(ident.to_public()),), zstd_level=1)
    store = MemoryStore()
    seg4 = wal.segment_name(1, 4)
    for name, data in ((wal.segment_name(1, 2), b"2" * 64), (wal.segment_name(1, 3), b"3" * 64),
                       (wal.stream_name(seg4, 3), b"abc")):
        walarchive.WalArchive(store, "pitr").push_bytes(name, data, stages)
    plan = plan_restore(walarchive.WalArchive(store, "pitr"), _base(), Target(), [ident])
    assert plan.tail == wal.stream_name(seg4, 3)
    store.delete([wal.payload_key("pitr", plan.tail), wal.record_key("pitr", plan.tail)])
    if meanwhile == "longer snapshot":
        walarchive.WalArchive(store, "pitr").push_bytes(wal.stream_name(seg4, 5), b"abcde", stages)
    else:
        walarchive.WalArchive(store, "pitr").push_bytes(seg4, b"abcdefgh" + bytes(SEG - 8), stages)

    class Repo:
        pass

    repo = Repo()
    repo.wal = lambda source: walarchive.WalArchive(store, source)  # type: ignore[attr-defined]
    staging = tmp_path / "staging"
    staging.mkdir()
    prefetch(repo, plan, [ident], staging)  # type: ignore[arg-type]
    got = (staging / seg4).read_bytes()
    assert len(got) == SEG
    assert got.startswith(b"abcde" if meanwhile == "longer snapshot" else b"abcdefgh") and not got[8:].strip(b"\0")
    assert sorted(p.name for p in staging.iterdir()) == [wal.segment_name(1, 2), wal.segment_name(1, 3), seg4]
