"""Point-in-time restore: a base backup plus archived WAL into a new data directory.

Order of events, and why:
1. plan (``pitr_plan``): base backup, timeline, every WAL segment needed — checked present;
2. check the target directory (empty, or ``--force``; never one a running server uses) and
   that the PostgreSQL OS user can read the config and identity ``restore_command`` needs;
3. fetch every planned segment into a staging folder beside the target, verifying sha256
   and decrypting — so a damaged object or a wrong identity fails here, before step 4;
4. only now write: extract the base backup as it is decoded (``tarextract``: every member
   through tarfile's ``data`` filter) into the directory (0700, owned by the PostgreSQL user),
   move the verified segments in as a spool, write ``recovery.signal`` and the recovery
   settings into ``postgresql.auto.conf``.

``restore_command`` takes a segment from the spool when it is there (a rename, no Python
start-up per segment) and otherwise runs ``posterity wal fetch`` (history files, anything
past the plan); ``recovery_end_command`` removes the spool. If step 4 fails, what it wrote
is removed again.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import shlex
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import (
    ConfigError,
    LocalResourceError,
    PosterityError,
    RestoreFailed,
    reworded,
)
from ...repository import Repository
from ...repository.walarchive import write_file
from .pitr_owner import check_readable_by, os_owner, posterity_command, verify_files
from .pitr_plan import Plan, Target
from .pitr_target import (
    Aside,
    check_directory,
    clear_stale_staging,
    earlier_asides,
    make_staging,
    move_aside,
)
from .tarextract import TarExtractor

log = logging.getLogger(__name__)

SPOOL = "posterity_wal_spool"

FETCH_WORKERS = 4


class IdentityMismatch(RestoreFailed):
    """Archived WAL belongs to another cluster than the base backup."""

    default_hint = "Check [sources] names: two clusters may archive into one source. Nothing was written."


@dataclass
class PitrRequest:
    source: str
    to_directory: Path
    target: Target
    config_path: Path
    identity_file: Path | None = None
    force: bool = False
    start: bool = False
    port: int | None = None
    verify: bool = False
    bin_dir: Path | None = None
    wait_timeout: float = 900.0
    notes: list[str] = field(default_factory=list)
    extra_settings: dict[str, str] = field(default_factory=dict)  # appended after the recovery settings
    protected: list[Path] = field(default_factory=list)  # repository, state folder, config: never under the target
    archive_mode: str = "off"  # "off": the copy never archives into the source; "preserve": keep the backup's


def prefetch(repo: Repository, plan: Plan, identities: list, staging: Path, progress=None) -> int:
    """Fetch, verify and decrypt every planned segment into ``staging``; returns bytes."""
    archive = repo.wal(plan.source)
    expected_sysid = plan.manifest.facts.get("system_identifier")

    def one(name: str) -> int:
        raw, record = archive.fetch_bytes(name, identities)
        sysid = record.get("system_identifier")
        if expected_sysid and sysid and str(sysid) != str(expected_sysid):
            raise IdentityMismatch(
                f"WAL segment {name} was archived by cluster {sysid}, but base backup {plan.manifest.id} is of "
                f"cluster {expected_sysid}.")
        write_file(staging / name, raw)
        if progress:
            progress(len(raw))
        return len(raw)

    # The tail first: a running streamer replaces its snapshot every few seconds (and drops
    # them all once the segment is stored whole), so the one the plan saw may be gone.
    total = _fetch_tail(plan, one, staging) if plan.tail else 0
    with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
        total += sum(pool.map(one, plan.segments))
    return total


def _fetch_tail(plan: Plan, one, staging: Path) -> int:
    """Fetch the streaming snapshot after the last segment, padded back to a whole segment.

    Recovery reads it as that segment and stops at the end of its written part, as after a
    crash (pg_receivewal had zero-filled the file). If the streamer superseded the snapshot
    since the plan, the newest one now stored is used — or the segment itself, once whole.
    """
    from ...repository.walarchive import WalNotArchived
    from ...repository.walnames import stream_length

    assert plan.tail is not None
    segment = plan.tail[:24]
    name = plan.tail
    for _ in range(5):
        try:
            size = one(name)
            break
        except WalNotArchived:
            assert plan.archive is not None
            listing = plan.archive.listing()
            if listing.has(segment):
                name = segment
                continue
            snaps = [f.name for f in listing.complete("stream") if f.name.startswith(segment + ".")]
            if not snaps:
                raise
            name = max(snaps, key=stream_length)
    else:
        raise WalNotArchived(f"The streaming snapshots of {segment} kept changing while this restore fetched them.",
                             hint="Restore again; or stop the streamer's source from writing for a moment.")
    if name != segment:
        data = (staging / name).read_bytes()
        write_file(staging / segment, data + bytes(plan.segment_size - len(data)))
        (staging / name).unlink()
        plan.tail = name
    else:
        plan.tail = None
        plan.segments.append(segment)
    return size


def extract_base(repo: Repository, plan: Plan, identities: list, target: Path, owner: pwd.struct_passwd) -> int:
    """Stream the base backup from the repository into ``target``; returns members.

    ``Repository.open_artifact`` decodes (verify, decrypt, decompress) in a thread and hands
    chunks through a bounded queue to the extractor in this thread, so decompression and file
    writes overlap. A failure of the decoding wins over what it caused in the extractor.
    """
    art = plan.manifest.artifacts[0]
    reader = repo.open_artifact(art, identities, depth=16)
    uid, gid = (owner.pw_uid, owner.pw_gid) if os.geteuid() == 0 else (None, None)
    extractor = TarExtractor(target, uid, gid)
    try:
        for chunk in reader.chunks():  # to the end: the stored object's sha256 is checked there
            extractor.feed(chunk)
        extractor.close()
    except BaseException as exc:
        reader.close()
        if reader.error is not None:
            if reader.error is exc:
                raise
            raise reader.error from exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise LocalResourceError(f"The disk holding {target} filled up while extracting the base backup.") from exc
        if isinstance(exc, PosterityError | KeyboardInterrupt):
            raise
        raise RestoreFailed(f"Extracting base backup {plan.manifest.id} into {target} failed: {exc}.") from exc
    finally:
        extractor.close_quietly()
        reader.close()
    return extractor.members


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def restore_command(req: PitrRequest, spool: Path) -> str:
    args = ["-c", str(req.config_path), "wal", "fetch", "--source", req.source]
    if req.identity_file:
        args += ["--identity", str(req.identity_file)]
    sp = shlex.quote(str(spool))
    return f"test -f {sp}/%f && mv {sp}/%f %p || {posterity_command()} {shlex.join(args)} %f %p"


def recovery_settings(req: PitrRequest, plan: Plan, spool: Path) -> dict[str, str]:
    t = req.target
    settings = {
        "restore_command": restore_command(req, spool),
        "recovery_end_command": f"rm -rf {shlex.quote(str(spool))}",
        "recovery_target_timeline": str(plan.timeline),
    }
    if t.time is not None:
        settings["recovery_target_time"] = t.time.isoformat()
    elif t.lsn is not None:
        settings["recovery_target_lsn"] = t.lsn
    elif t.xid is not None:
        settings["recovery_target_xid"] = str(t.xid)
    elif t.name is not None:
        settings["recovery_target_name"] = t.name
    if t.kind is not None:
        settings["recovery_target_action"] = t.action
    if req.archive_mode == "off":
        # A copy that promotes would otherwise push its new timeline into the source's archive.
        settings["archive_mode"] = "off"
    settings.update(req.extra_settings)
    return settings


def write_recovery(target: Path, settings: dict[str, str], plan: Plan, owner: pwd.struct_passwd) -> None:
    auto = target / "postgresql.auto.conf"
    lines = ["", f"# posterity restore pitr {plan.manifest.id} at {datetime.now(UTC).isoformat(timespec='seconds')}"]
    lines += [f"{k} = {_conf_quote(v)}" for k, v in settings.items()]
    with open(auto, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    signal = target / "recovery.signal"
    signal.touch()
    for p in (auto, signal):
        os.chmod(p, 0o600)
        if os.geteuid() == 0:
            os.chown(p, owner.pw_uid, owner.pw_gid)


def restore_pitr(repo: Repository, plan: Plan, identities: list, req: PitrRequest, progress=None) -> dict[str, Any]:
    """Steps 2–4 (and, with ``req.start``, start the server and wait for the target)."""
    t0 = time.monotonic()
    req.notes.extend(plan.notes)
    target = req.to_directory.absolute()
    owner = os_owner()
    busy = check_directory(target, req.force, req.protected)
    needs = [req.config_path] + ([req.identity_file] if req.identity_file else [])
    check_readable_by(owner, [p for p in needs if p is not None])
    stage_parent = target.parent if target.parent.is_dir() else Path(tempfile.gettempdir())
    for stale in clear_stale_staging(stage_parent):
        req.notes.append(f"removed {stale}, decrypted WAL left by a restore that did not finish")
    for kept in earlier_asides(target):
        req.notes.append(f"{kept} holds what an earlier --force restore of {target} moved aside and did not "
                         "finish; remove it when you no longer need it")
    need = len(plan.segments) * plan.segment_size + plan.manifest.artifacts[0].raw_size
    free = shutil.disk_usage(stage_parent).free
    if free < need:
        raise LocalResourceError(
            f"Restoring needs about {need >> 20} MiB (base backup and {len(plan.segments)} WAL segments) on the disk "
            f"holding {stage_parent}, which has {free >> 20} MiB free; nothing was changed.",
            hint="Free space, restore onto a larger disk, or pick a target closer to a base backup.")
    staging = make_staging(stage_parent)
    created = not target.exists()
    wrote = False
    aside: Aside | None = None
    try:
        wal_bytes = prefetch(repo, plan, identities, staging, progress)
        wrote = True
        if busy:
            aside = move_aside(target)
        target.mkdir(mode=0o700, exist_ok=True)
        os.chmod(target, 0o700)
        if os.geteuid() == 0:
            os.chown(target, owner.pw_uid, owner.pw_gid)
        members = extract_base(repo, plan, identities, target, owner)
        major = int(plan.manifest.facts.get("server_version_num", 0)) // 10000
        if req.verify:
            req.notes.append(verify_files(target, major, req.bin_dir, owner))
        spool = target / SPOOL
        shutil.move(str(staging), str(spool))
        os.chmod(spool, 0o700)
        if os.geteuid() == 0:
            for p in [spool, *spool.iterdir()]:
                os.chown(p, owner.pw_uid, owner.pw_gid)
        settings = recovery_settings(req, plan, spool)
        write_recovery(target, settings, plan, owner)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if wrote:
            note = _undo(target, created, aside)
            if isinstance(exc, PosterityError):
                raise reworded(exc, exc.message + note) from exc
        raise
    result: dict[str, Any] = {
        **plan.to_dict(),
        "source": plan.source,
        "target": req.target.describe(),
        "directory": str(target),
        "owner": owner.pw_name,
        "tar_members": members,
        "wal_bytes": wal_bytes,
        "base_bytes": plan.manifest.artifacts[0].raw_size,
        "settings": settings,
        "started": False,
    }
    if req.start:
        from .pitr_start import start_and_wait

        try:
            result.update(start_and_wait(target, req, plan, owner, major))
        except PosterityError as exc:
            if aside is not None:
                raise reworded(exc, exc.message + f" The directory's old contents are kept in {aside.holder}.") from exc
            raise
    if aside is not None:
        aside.discard()
        req.notes.append(f"replaced the old contents of {target} (--force); they were kept aside until now")
    result["seconds"] = round(time.monotonic() - t0, 3)
    result["notes"] = req.notes
    return result


def _undo(target: Path, created: bool, aside: Aside | None) -> str:
    """Remove what a failed restore wrote; put back what ``--force`` moved aside."""
    if aside is not None:
        if not aside.whole:
            for child in target.iterdir():
                if child != aside.holder:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        aside.restore_back()
        return f" What this restore wrote in {target} was removed and its old contents put back."
    if created:
        shutil.rmtree(target, ignore_errors=True)
    elif target.is_dir():
        for child in target.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    return f" What this restore wrote in {target} was removed."


def parse_target_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"--target-time {text!r} is not a time; write it like '2024-01-15 10:42:00+00'.") from exc
