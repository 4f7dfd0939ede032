"""The streamer's storing rules without PostgreSQL: files in its folder as pg_receivewal
leaves them, a store that fails and recovers, snapshots that supersede each other."""

from __future__ import annotations

import time
from pathlib import Path

import pyrage
import pytest

from posterity.errors import StorageUnreachable
from posterity.pipeline import Stages
from posterity.repository import walarchive
from posterity.repository import walnames as wal
from posterity.sources.postgres import walstream
from posterity.sources.postgres.physical_config import PhysicalConfig
from posterity.storage import MemoryStore

SEG = wal.DEFAULT_SEGMENT_SIZE
S5, S6 = wal.segment_name(1, 5), wal.segment_name(1, 6)


class FlakyStore(MemoryStore):
    """Refuses every write while ``down``."""

    down = False

    def put(self, key, data, **kw):  # type: ignore[override]
        if self.down:
            raise StorageUnreachable("store down (test)")
        return super().put(key, data, **kw)


@pytest.fixture
def streamer(tmp_path: Path):
    ident = pyrage.x25519.Identity.generate()
    cfg = PhysicalConfig(kind="postgres-physical", dsn="postgresql://x@127.0.0.1:1/postgres", wal="stream",
                         stream_directory=tmp_path / "spool")
    store = FlakyStore()
    s = walstream.WalStreamer(walarchive.WalArchive(store, "pitr"), cfg, Stages(recipients=(str(ident.to_public()),)),
                              tmp_path / "state")
    s.store = store  # type: ignore[attr-defined]
    s.directory.mkdir(parents=True)
    s.identity = ident  # type: ignore[attr-defined]
    return s


def _partial(s: walstream.WalStreamer, segment: str, written: bytes) -> Path:
    """pg_receivewal's open segment: zero-filled to full size, ``written`` at the start."""
    path = s.directory / f"{segment}.partial"
    path.write_bytes(written + bytes(SEG - len(written)))
    return path


def _names(s: walstream.WalStreamer) -> set[str]:
    return {f.name for f in walarchive.WalArchive(s.store, "pitr").listing().complete()}


def test_completed_segments_are_stored_then_removed_and_snapshots_follow_the_open_segment(streamer) -> None:
    s = streamer
    seg5 = bytes(range(256)) * (SEG // 256)
    (s.directory / S5).write_bytes(seg5)
    _partial(s, S6, b"first" * 100)
    assert s.sweep() == 1
    assert not (s.directory / S5).exists()
    first = wal.stream_name(S6, 500)
    assert _names(s) == {S5, first}
    raw, _ = walarchive.WalArchive(s.store, "pitr").fetch_bytes(S5, [s.identity])  # type: ignore[attr-defined]
    assert raw == seg5
    raw, _ = walarchive.WalArchive(s.store, "pitr").fetch_bytes(first, [s.identity])  # type: ignore[attr-defined]
    assert raw == b"first" * 100  # the written part only; restore pads the zeros back
    assert s.sweep() == 0 and _names(s) == {S5, first}  # unchanged file: no new snapshot
    path = _partial(s, S6, b"first" * 100 + b"second" * 10)
    s.sweep()
    assert _names(s) == {S5, wal.stream_name(S6, 560)}  # the longer snapshot replaced the shorter
    path.rename(s.directory / S6)  # pg_receivewal finished the segment
    s.sweep()
    assert _names(s) == {S5, S6}  # stored whole; its snapshots are gone
    assert s.state.segments_stored == 2 and s.state.last_segment == S6 and s.state.backlog == 0


def test_a_store_outage_keeps_files_in_order_and_alerts_once_then_recovers(streamer, monkeypatch) -> None:
    s = streamer
    alerts: list[tuple[str, str]] = []
    s.alert = lambda kind, title, body: alerts.append((kind, title))
    monkeypatch.setattr(walstream, "ALERT_AFTER", 0.0)
    s.store.down = True  # type: ignore[attr-defined]
    (s.directory / S5).write_bytes(b"5" * 100)
    (s.directory / S6).write_bytes(b"6" * 100)
    _partial(s, wal.segment_name(1, 7), b"open")
    for _ in range(3):
        assert s.sweep() == 0
        s._end_turn()
    assert (s.directory / S5).exists() and (s.directory / S6).exists()
    assert s.state.backlog == 2 and "store down" in (s.state.last_error or "")
    assert alerts == [("failure", "pitr: WAL streaming failing")]  # once, not every turn
    s.store.down = False  # type: ignore[attr-defined]
    assert s.sweep() == 2
    s._end_turn()
    assert _names(s) == {S5, S6, wal.stream_name(wal.segment_name(1, 7), 4)}
    assert alerts[-1] == ("recovery", "pitr: WAL streaming recovered")
    assert walstream.read_state(s.state_path.parent.parent, "pitr")["backlog"] == 0  # type: ignore[index]


def test_a_second_streamer_on_the_same_folder_is_refused(streamer, tmp_path: Path) -> None:
    streamer._lock()
    other = walstream.WalStreamer(streamer.archive, streamer.cfg, streamer.stages, tmp_path / "state")
    with pytest.raises(walstream.StreamerBusy) as err:
        other._lock()
    assert err.value.exit_code == 8 and "Another streamer" in err.value.message
    streamer.close()
    other._lock()  # free again once the first one closed
    other.close()


def test_a_receiver_that_keeps_failing_alerts_once(streamer, monkeypatch) -> None:
    """pg_receivewal exiting again and again (server down, slot lost) is a failure streak,
    not a success between restarts."""
    import threading

    s = streamer
    alerts: list[tuple[str, str]] = []
    s.alert = lambda kind, title, body: alerts.append((kind, title))
    monkeypatch.setattr(walstream, "ALERT_AFTER", 0.5)
    s.cfg.stream_interval = 0.2
    s.prepare = lambda: None
    s.tool = Path("/bin/false")  # exits 1 at once, like pg_receivewal that cannot connect
    stop = threading.Event()
    t = threading.Thread(target=s.run, args=(stop,))
    t.start()
    time.sleep(2.5)
    stop.set()
    t.join(10)
    assert alerts == [("failure", "pitr: WAL streaming failing")]
    assert s.state.receiver_restarts >= 1 and "pg_receivewal exited with code 1" in (s.state.last_error or "")
