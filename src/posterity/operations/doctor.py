"""``posterity doctor``: every check a source needs, done the way it will run.

Each check is ``ok``, ``warn`` or ``fail``, with what was found and, unless ``ok``, a hint.
A check never raises: a failure to even look is itself a ``fail`` (or ``warn`` when only a
privilege to look is missing). The report's exit code is ``EXIT_DOCTOR`` when any check
failed, else 0.

Common checks (``repository``, ``keys``) run for every report; each source kind adds its own
through the registry (``SourceEntry.doctor``): PostgreSQL in ``doctor_postgres``,
Meilisearch and files in ``doctor_sources``. The daemon runs the same report at start and
logs every line.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PosterityError
from .context import Context

log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
EXIT_DOCTOR = 15
#: Above this the store's clock and ours disagree enough to confuse lock expiry and retention.
MAX_SKEW_SECONDS = 60.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""
    source: str | None = None  # None: a check of the repository or keys

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_DOCTOR if any(c.status == FAIL for c in self.checks) else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in (OK, WARN, FAIL)}

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "counts": self.counts(), "checks": [c.to_dict() for c in self.checks]}


def guarded(name: str, fn: Callable[[], Check | list[Check]], source: str | None = None) -> list[Check]:
    """Run one check; any error becomes a ``fail`` naming it (a check never raises)."""
    try:
        out = fn()
    except PosterityError as exc:
        return [Check(name, FAIL, exc.message, exc.hint, source)]
    except Exception as exc:  # the doctor must report, not crash, whatever it meets
        return [Check(name, FAIL, f"{type(exc).__name__}: {exc}", "Run with -v and report it if it is not clear.",
                      source)]
    checks = out if isinstance(out, list) else [out]
    for c in checks:
        c.source = c.source or source
    return checks


def doctor(ctx: Context, source: str | None = None) -> DoctorReport:
    """Check the repository, the keys, and every source (or only ``source``)."""
    from ..sources.registry import SOURCES

    report = DoctorReport()
    report.checks += repository_checks(ctx)
    report.checks += key_checks(ctx)
    names = [source] if source else sorted(ctx.config.sources)
    for name in names:
        cfg = ctx.config.source(name)
        entry = SOURCES[cfg.kind]
        report.checks += _source_checks(entry.doctor, ctx, name, cfg)
    return report


def _source_checks(ref: str, ctx: Context, name: str, cfg: Any) -> list[Check]:
    """The kind's checks; an error part-way keeps the checks made so far and adds a ``fail``."""
    import importlib

    module, fn = ref.split(":")
    out: list[Check] = []

    def collect() -> list[Check]:
        checks: Iterator[Check] = getattr(importlib.import_module(module), fn)(ctx, name, cfg)
        for c in checks:
            c.source = c.source or name
            out.append(c)
        return []

    failed = guarded("source", collect, name)
    return out + failed


# -- repository --------------------------------------------------------------------------


def repository_checks(ctx: Context) -> list[Check]:
    checks = guarded("repository reachable", lambda: _reachable(ctx))
    if checks[0].status == FAIL:
        return checks

    def writable() -> list[Check]:
        probe = ctx.repo.write_probe()
        out = [Check("repository writable", OK, f"created and read back {probe.key} (create-if-absent)")]
        if not probe.deleted:
            out[0] = Check("repository writable", WARN,
                           f"created {probe.key} but could not delete it: {probe.delete_error}",
                           "A bucket lock may keep it until its rule allows deletion; it is harmless.")
        if probe.skew_seconds is None:
            out.append(Check("clock skew", WARN, "the store reports no modification time", ""))
        elif abs(probe.skew_seconds) > MAX_SKEW_SECONDS:
            out.append(Check("clock skew", FAIL, f"this host's clock is {-probe.skew_seconds:+.0f} s off the store's",
                             "Run NTP (systemd-timesyncd or chrony); lock expiry and retention compare times."))
        else:
            out.append(Check("clock skew", OK, f"{probe.skew_seconds:+.1f} s against the store"))
        return out

    return checks + guarded("repository writable", writable)


def _reachable(ctx: Context) -> Check:
    ctx.repo.require_initialised()  # asked afresh: the Repository caches its descriptor
    desc = ctx.repo.descriptor()
    return Check("repository reachable", OK, f"{ctx.repo.location}: format {desc.get('format')}, "
                 f"created {desc.get('created')}")


# -- keys --------------------------------------------------------------------------------


def key_checks(ctx: Context) -> list[Check]:
    from ..pipeline.keys import parse_recipient

    enc = ctx.config.encryption
    checks: list[Check] = []
    bad = []
    for r in enc.recipients:
        try:
            parse_recipient(r)
        except PosterityError:
            bad.append(r[:16] + "…")
    if bad:
        checks.append(Check("recipients", FAIL, f"not valid age public keys: {', '.join(bad)}",
                            "Recipients look like age1… (`posterity key generate` or `age-keygen -y key.txt`)."))
    elif not enc.recipients:
        checks.append(Check("recipients", FAIL, "no recipients are configured: nothing can be encrypted",
                            "Add [encryption] recipients = [\"age1…\"]."))
    else:
        checks.append(Check("recipients", OK, f"{len(enc.recipients)} valid recipient(s)"))
    checks += guarded("identity", lambda: identity_check(enc.identity_file, list(enc.recipients)))
    return checks


def identity_check(path: str | Path | None, recipients: list[str]) -> Check:
    """The identity (private key): absent is fine on a backup-only host; present, it must be
    readable by this user and by nobody else but its owner (and group, for restore_command)."""
    from ..pipeline.keys import recipient_of_identity_file

    if not path:
        return Check("identity", OK, "no identity_file configured: this host can back up but not restore or verify")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return Check("identity", WARN, f"{p} does not exist: this host cannot restore or `verify --read-data`",
                     "Fine on a backup-only host (keep the key offline); copy it here only to restore.")
    except PermissionError:
        return Check("identity", FAIL, f"{p} cannot be reached by this user (a folder above it is not searchable)",
                     f"Run as the user that restores, or let it reach {p.parent}.")
    if st.st_mode & stat.S_IROTH or st.st_mode & stat.S_IWOTH:
        return Check("identity", FAIL, f"{p} is readable by every user (mode {stat.S_IMODE(st.st_mode):04o})",
                     f"chmod 600 {p} (or 640 with the postgres group when restore_command must read it).")
    if not os.access(p, os.R_OK):
        return Check("identity", FAIL, f"{p} is not readable by this user (uid {os.geteuid()}; mode "
                     f"{stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})",
                     f"Run as its owner, or chown that user {p}; keep the mode 600.")
    publics = recipient_of_identity_file(p)
    mode = stat.S_IMODE(st.st_mode)
    if not set(publics) & set(recipients):
        return Check("identity", WARN, f"{p} holds no identity matching the configured recipients",
                     "Backups written now cannot be decrypted with it; check you have the right key file.")
    if mode & 0o077 and mode & stat.S_IRGRP == 0:
        return Check("identity", WARN, f"{p} has mode {mode:04o}", f"chmod 600 {p}")
    note = " (group-readable: for restore_command)" if mode & stat.S_IRGRP else ""
    return Check("identity", OK, f"{p} readable by its owner only{note}; it decrypts backups, so keep it only on "
                 "hosts that restore or verify")
