"""The replication slot a WAL streamer reads through (``wal = "stream"``): check the server
can stream, create the physical slot (reserving WAL from that moment), read its state,
drop it. The supervisor is ``walstream.py``; storing what arrives is ``walstream_snapshot.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from ...errors import ConfigError, LockHeld, SourceError
from .tools import connect, describe

log = logging.getLogger("posterity.sources.postgres.walstream")


class StreamerBusy(LockHeld):
    """Another streamer already runs for this source."""

    default_hint = "Stop the other `posterity wal stream` (or daemon) first; one streamer per source."




def server_facts(dsn: str) -> dict[str, Any]:
    """Version, system identifier and replication settings, checked for streaming."""
    with connect(dsn) as conn:
        row = conn.execute(
            "select current_setting('server_version_num')::int, current_setting('wal_level'), "
            "current_setting('max_wal_senders')::int, "
            "(select rolreplication or rolsuper from pg_roles where rolname = current_user)"
        ).fetchone()
        assert row is not None
        try:
            sysid_row = conn.execute("select system_identifier::text from pg_control_system()").fetchone()
            sysid = sysid_row[0] if sysid_row else None
        except Exception:  # pg_control_system() may be revoked from this role: the id is informational
            sysid = None
    version_num, wal_level, senders, can_replicate = row
    where = describe(dsn)
    if version_num < 150000:
        # Older pg_receivewal starts at the server's current position, not the slot's, when its
        # folder is empty: WAL the slot kept would be skipped, leaving a gap.
        raise SourceError(f"{where} runs PostgreSQL {version_num // 10000}; streaming mode needs 15 or newer.",
                          hint='Use wal = "archive" (archive_command) for this server.')
    if not can_replicate:
        raise SourceError(f"The role connecting to {where} has no REPLICATION privilege; streaming WAL needs it.",
                          hint="ALTER ROLE <user> REPLICATION; and allow it in pg_hba.conf (a 'replication' line).")
    if wal_level == "minimal" or senders < 1:
        raise SourceError(f"{where} cannot stream WAL (wal_level = {wal_level}, max_wal_senders = {senders}).",
                          hint="Set wal_level = replica and max_wal_senders >= 2 (one for the streamer, one for "
                          "base backups), then restart PostgreSQL.")
    return {"server_version_num": version_num, "system_identifier": sysid}


def slot_info(dsn: str, slot: str) -> dict[str, Any] | None:
    """The slot's state on the server, or None when it does not exist."""
    with connect(dsn) as conn:
        row = conn.execute(
            "select slot_type, active, active_pid, restart_lsn::text, wal_status, "
            "case when pg_is_in_recovery() then null "
            "else pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint end "
            "from pg_replication_slots where slot_name = %s", (slot,)
        ).fetchone()
    if row is None:
        return None
    return {"slot": slot, "type": row[0], "active": row[1], "active_pid": row[2], "restart_lsn": row[3],
            "wal_status": row[4], "retained_bytes": row[5]}


def ensure_slot(dsn: str, slot: str) -> dict[str, Any]:
    """Create the physical slot (reserving WAL from now) unless it exists; its state."""
    info = slot_info(dsn, slot)
    if info is None:
        with connect(dsn) as conn:
            try:
                conn.execute("select pg_create_physical_replication_slot(%s, true)", (slot,))
            except Exception as exc:  # a race with another creator is fine; anything else is reported
                if slot_info(dsn, slot) is None:
                    raise SourceError(f"Could not create the replication slot {slot!r} on {describe(dsn)}: {exc}",
                                      hint="Check max_replication_slots and that the role has REPLICATION.") from exc
        log.info("Created the physical replication slot %s on %s.", slot, describe(dsn))
        info = slot_info(dsn, slot)
        assert info is not None
    elif info["wal_status"] == "lost":
        raise SourceError(
            f"The replication slot {slot!r} on {describe(dsn)} is invalidated (wal_status lost): the server removed "
            "WAL it had kept for it, so the archive stops at the last stored segment.",
            hint="Drop the slot (`posterity wal stream --drop-slot`), move the stream folder's .partial file aside, "
            "start the streamer again, and take a new base backup: restores cannot cross the gap.")
    elif info["type"] != "physical":
        raise ConfigError(f"The replication slot {slot!r} on {describe(dsn)} is a {info['type']} slot, not physical.",
                          hint="Choose another name with slot = \"...\" in the source's section.")
    return info


def drop_slot(dsn: str, slot: str) -> bool:
    """Drop the slot (the server then stops keeping WAL for it); False when it did not exist."""
    info = slot_info(dsn, slot)
    if info is None:
        return False
    if info["active"]:
        raise StreamerBusy(f"The replication slot {slot!r} is in use (pid {info['active_pid']}); not dropped.")
    with connect(dsn) as conn:
        conn.execute("select pg_drop_replication_slot(%s)", (slot,))
    return True
