"""Physical PostgreSQL backups: ``pg_basebackup`` base backups for point-in-time recovery.

One artifact, ``base.tar``: ``pg_basebackup -D - -Ft -X none`` writes the whole data
directory as one tar to stdout, and it streams straight into the pipeline (no local
staging). With ``-D -`` PostgreSQL appends its ``backup_manifest`` to that tar, so it is
stored inside the artifact and lands in the restored directory, where
``pg_verifybackup -n DIR`` checks every file against it.

``-X none``: the WAL the backup needs arrives like every other WAL, through archiving
(``posterity wal push``) or streaming (``wal = "stream"``, ``walstream.py``). The backup is
committed only once every segment it needs (first to last) is complete in THIS repository,
whatever the server's pg_stat_archiver says, so a committed base backup is always
restorable; the server's own wait for archiving and ours are bounded by ``archive_wait``
(``archive_wait.py``). The facts
the manifest records — start/stop LSN, timeline, first and last WAL segment needed, system
identifier, server version, the backup_label — are read from the tar stream as it passes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ...errors import DumpFailed, SourceAuthError, SourceError
from ...repository import walnames as wal
from ...repository.walarchive import WalArchive
from ..base import Artifact, Source
from .archive_wait import (
    BasebackupWatch,
    WalNotArchived,
    archived_elsewhere,
    archiver_text,
    wait_in_repository,
)
from .logical import _Process
from .physical_config import PhysicalConfig
from .sizing import cluster_size
from .tarscan import TarTap
from .tools import client_env, connect, describe, require_client

log = logging.getLogger(__name__)

BASE_KIND = "pg_basebackup-tar"
BASE_ARTIFACT = "base.tar"
WANTED = {"backup_label", "backup_manifest", "global/pg_control", "PG_VERSION"}


def parse_backup_label(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    m = re.search(r"^START WAL LOCATION: (\S+) \(file ([0-9A-F]{24})\)", text, re.M)
    if m:
        out["start_lsn"], out["wal_start_segment"] = m.group(1), m.group(2)
    for key, field in (("CHECKPOINT LOCATION", "checkpoint_lsn"), ("START TIME", "label_start_time"),
                       ("START TIMELINE", "timeline"), ("LABEL", "label")):
        m = re.search(rf"^{key}: (.+)$", text, re.M)
        if m:
            out[field] = m.group(1).strip()
    if "timeline" in out:
        out["timeline"] = int(out["timeline"])
    return out


class PhysicalSource(Source):
    kind = "postgres-physical"
    config: PhysicalConfig

    def __init__(self, name: str, config: PhysicalConfig) -> None:
        super().__init__(name, config)
        self.dsn = config.dsn.get_secret_value()
        self._facts: dict[str, Any] = {}
        self._wal: WalArchive | None = None

    def bind(self, repo: Any) -> None:
        self._wal = repo.wal(self.name)

    def check(self) -> dict[str, Any]:
        with connect(self.dsn) as conn:
            row = conn.execute(
                "select current_setting('server_version_num')::int, current_setting('server_version'), "
                "current_setting('wal_segment_size'), current_setting('archive_mode'), "
                # archive_command is readable by superusers and pg_read_all_settings only: NULL otherwise
                "(select setting from pg_settings where name = 'archive_command'), pg_is_in_recovery(), "
                "(select rolreplication or rolsuper from pg_roles where rolname = current_user), "
                "(select count(*) from pg_tablespace where spcname not in ('pg_default', 'pg_global')), "
                "(select last_archived_wal from pg_stat_archiver)"
            ).fetchone()
        assert row is not None
        (version_num, version, seg_size, archive_mode, archive_command, in_recovery, can_replicate, spaces,
         last_archived) = row
        where = describe(self.dsn)
        if spaces:
            raise SourceError(
                f"{where} has {spaces} tablespace(s) besides pg_default; a streamed base backup "
                "(pg_basebackup -D -) holds one tablespace only.",
                hint="Move their tables to pg_default, or back this server up with a postgres (pg_dump) source.",
            )
        if not can_replicate:
            raise SourceAuthError(
                f"The role connecting to {where} has no REPLICATION privilege; pg_basebackup needs it.",
                hint="ALTER ROLE <user> REPLICATION; and allow it in pg_hba.conf (a 'replication' line).",
            )
        if self.config.wal == "stream":
            self._check_slot(where)
        elif archive_mode == "off":
            raise SourceError(
                f"WAL archiving is off on {where}; a base backup without archived WAL cannot be restored.",
                hint=f"Set archive_mode = on and archive_command = 'posterity wal push --source {self.name} %p' "
                "in postgresql.conf, then restart PostgreSQL.",
            )
        major = version_num // 10000
        tool, tool_version = require_client("pg_basebackup", major, self.config.bin_dir)
        facts = {
            "server_version_num": version_num,
            "server_version": version,
            "wal_segment_size": _size_setting(seg_size),
            "archive_command": archive_command,
            "from_standby": bool(in_recovery),
            "pg_basebackup": str(tool),
            "pg_basebackup_version": tool_version,
            "target": where,
        }
        if self.config.wal == "archive":
            # Judged by what archiving does (the newest archived segment is in this
            # repository), not by the command's text: wrapper scripts are fine.
            elsewhere = archived_elsewhere(self._wal, last_archived)
            if elsewhere:
                log.warning("WAL archiving of %s: %s", where, elsewhere)
        self._facts.update(facts)
        return facts

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def _check_slot(self, where: str) -> None:
        """Streaming mode: the slot must exist (it keeps the backup's WAL until it is streamed)."""
        from .walstream import slot_info

        slot = self.config.slot_name(self.name)
        info = slot_info(self.dsn, slot)
        if info is None:
            raise SourceError(
                f"{where} has no replication slot {slot!r}: nothing streams its WAL, so a base backup could not be "
                "restored.",
                hint=f"Start the streamer first: `posterity wal stream --source {self.name}` (or `posterity daemon`).",
            )
        if not info["active"]:
            log.warning("Replication slot %s on %s is not in use: is `posterity wal stream` running? The base "
                        "backup waits up to %ds for its WAL.", slot, where, self.config.archive_wait)
        self._facts["wal_method"] = "stream"
        self._facts["slot"] = slot

    def dump(self) -> Iterator[Artifact]:
        if "server_version_num" not in self._facts:
            self.check()
        major = self._facts["server_version_num"] // 10000
        tool, _ = require_client("pg_basebackup", major, self.config.bin_dir)
        argv = [
            str(tool), "--pgdata=-", "--format=tar", "--wal-method=none", "--no-password",
            f"--checkpoint={self.config.checkpoint}", f"--label=posterity {self.name}",
        ]
        if self.config.manifest_checksums == "NONE":
            argv.append("--no-manifest")
        else:
            argv.append(f"--manifest-checksums={self.config.manifest_checksums}")
        env = client_env(self.dsn)
        env["PGAPPNAME"] = app_name = f"posterity-basebackup-{uuid.uuid4().hex[:12]}"
        proc = _Process(argv, env, f"pg_basebackup of {describe(self.dsn)}")
        watch = BasebackupWatch(self.dsn, app_name, self.name, self.config.archive_wait, proc.proc.kill).start()
        tap = TarTap(proc.stdout, WANTED)
        self._facts["start_time"] = datetime.now(UTC).isoformat()

        def finish() -> None:
            try:
                if watch.failure is not None:
                    proc.abort()
                    raise watch.failure
                proc.finish()
            finally:
                watch.stop()
            if watch.failure is not None:  # fired after pg_basebackup's own exit: its cause
                raise watch.failure
            self._record(tap)
            self._wait_archived(watch)

        def abort() -> None:
            watch.stop()
            proc.abort()
            watch.end_server_side()

        yield Artifact(
            name=BASE_ARTIFACT,
            kind=BASE_KIND,
            stream=tap,  # type: ignore[arg-type]
            expected_size=cluster_size(self.dsn),  # R2's equal parts are sized from it
            facts={"format": "tar", "manifest_inside": self.config.manifest_checksums != "NONE"},
            finish=finish,
            abort=abort,
            cancel=proc.proc.kill,  # a deadline or SIGTERM ends a stopped or stuck pg_basebackup too
        )

    def _record(self, tap: TarTap) -> None:
        if not tap.ended or "backup_label" not in tap.captured:
            raise DumpFailed("pg_basebackup's tar stream ended early or holds no backup_label; nothing was committed.")
        facts = self._facts
        label = tap.captured["backup_label"].decode(errors="replace")
        facts["backup_label"] = label
        facts.update(parse_backup_label(label))
        seg_size = int(facts.get("wal_segment_size") or wal.DEFAULT_SEGMENT_SIZE)
        stop_lsn = start_lsn = wal.parse_lsn(facts["start_lsn"])
        stop_tli = facts.get("timeline")
        manifest_raw = tap.captured.get("backup_manifest")
        if manifest_raw:
            try:
                bm = json.loads(manifest_raw)
                ranges = bm.get("WAL-Ranges") or []
                if ranges:
                    stop_lsn = wal.parse_lsn(ranges[-1]["End-LSN"])
                    stop_tli = int(ranges[-1]["Timeline"])
                facts["backup_manifest_sha256"] = hashlib.sha256(manifest_raw).hexdigest()
                facts["files"] = len(bm.get("Files") or [])
            except (ValueError, KeyError, TypeError) as exc:
                raise DumpFailed(f"pg_basebackup's backup_manifest could not be read: {exc}.") from exc
        else:
            stop_lsn = self._current_lsn()
        facts["stop_lsn"] = wal.format_lsn(stop_lsn)
        facts["stop_timeline"] = stop_tli
        last = wal.segno_of_lsn(max(stop_lsn - 1, start_lsn), seg_size)
        facts["wal_stop_segment"] = wal.segment_name(int(stop_tli or 1), last, seg_size)
        facts["stop_time"] = datetime.now(UTC).isoformat()
        control = tap.captured.get("global/pg_control")
        if control and len(control) >= 8:
            facts["system_identifier"] = str(struct.unpack("=Q", control[:8])[0])
        if "PG_VERSION" in tap.captured:
            facts["pg_version_file"] = tap.captured["PG_VERSION"].decode().strip()
        facts["tar_members"] = tap.members

    def _current_lsn(self) -> int:
        with connect(self.dsn) as conn:
            row = conn.execute("select pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return wal.parse_lsn(row[0])

    def _wait_archived(self, watch: BasebackupWatch) -> None:
        """Wait (boundedly) until every WAL segment the backup needs is in this repository."""
        facts = self._facts
        seg_size = int(facts.get("wal_segment_size") or wal.DEFAULT_SEGMENT_SIZE)
        first, last = facts.get("wal_start_segment") or facts["wal_stop_segment"], facts["wal_stop_segment"]
        try:
            facts["archived_wait_seconds"] = wait_in_repository(
                self._wal, first, last, seg_size, watch.deadline(),
                lambda: self._archiver_text(watch),
            )
        except WalNotArchived as exc:
            if self.config.wal != "stream":
                raise
            raise WalNotArchived(
                exc.message.replace("did not reach", "was not streamed and stored in"),
                hint=f"Nothing was committed. Is `posterity wal stream --source {self.name}` (or the daemon) "
                "running? `posterity wal status` shows the streamer's last error.",
            ) from None

    def _archiver_text(self, watch: BasebackupWatch) -> str:
        """What the server says about archiving, for the error message (fresh when possible)."""
        if self.config.wal == "stream":
            return ""
        try:
            with connect(self.dsn) as conn:
                row = conn.execute("select last_archived_wal, failed_count, last_failed_wal from pg_stat_archiver").fetchone()
        except Exception:
            row = watch.archiver
        text = archiver_text(row, watch.failed_at_start)
        if row is not None and row[0] and str(row[0])[:24] >= (self._facts.get("wal_stop_segment") or "~"):
            text += " — the server counts it archived, so archive_command stores it somewhere else (or nowhere)"
        return text

    def by_hand(self, manifest: Any) -> list[str]:
        art = manifest.artifacts[0] if manifest.artifacts else None
        if art is None:
            return []
        return [
            f'mkdir -m 700 DIR && rclone cat "$REPO/{art.key}" | age -d -i key.txt | zstd -d | tar -x -C DIR',
            "pg_verifybackup -n DIR   # checks every file against the backup_manifest inside the tar",
            f"for each WAL file from {manifest.facts.get('wal_start_segment')} on: "
            f'rclone cat "$REPO/wal/{manifest.source}/<timeline>/<file>.zst.age" | age -d -i key.txt | zstd -d > DIR/pg_wal/<file>',
            "touch DIR/recovery.signal; set restore_command = 'false' and recovery_target_* in DIR/postgresql.auto.conf; "
            "pg_ctl -D DIR start",
        ]


def _size_setting(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([kMG]?B)?", str(text).strip())
    if not m:
        return wal.DEFAULT_SEGMENT_SIZE
    n = int(m.group(1))
    return n * {"kB": 1024, "MB": 1 << 20, "GB": 1 << 30}.get(m.group(2) or "", 1)
