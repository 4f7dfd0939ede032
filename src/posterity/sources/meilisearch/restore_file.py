"""Write a stored snapshot or dump back to a file, and bring Meilisearch up on it.

Meilisearch imports snapshots and dumps only at start-up (``--import-snapshot`` /
``--import-dump``) and never over an existing database, so Posterity's part is: verify,
decrypt and decompress the file to PATH (written as ``PATH.partial`` and renamed once whole),
then either print the exact steps or, with ``restart_command`` configured, run it, wait for
``/health`` and compare every index's document count with the backup's.

A snapshot is a copy of the database files and opens only with the same Meilisearch version;
a dump opens with that version or a newer one. Both are checked against the live server's
``/version`` before anything is downloaded (when the server answers).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ...errors import (
    ConfigError,
    LocalResourceError,
    PosterityError,
    RestoreFailed,
    RestoreTargetError,
)
from .client import MeiliClient
from .export import EXPORT_KIND
from .source import DUMP_KIND, SNAPSHOT_KIND

FLAGS = {"snapshot": "--import-snapshot", "dump": "--import-dump"}


class VersionMismatch(RestoreTargetError):
    """The Meilisearch version cannot open this file."""


def _version(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


def expected_counts(manifest: Any, what: str | None = None) -> tuple[dict[str, int], bool]:
    """Document counts to compare a restored server with, and whether they are exact."""
    kinds = [SNAPSHOT_KIND, DUMP_KIND] if what is None else [SNAPSHOT_KIND if what == "snapshot" else DUMP_KIND]
    for kind in kinds:
        for art in manifest.artifacts_of_kind(kind):
            if "index_counts" in art.facts:
                return dict(art.facts["index_counts"]), bool(art.facts.get("counts_exact"))
    exports = {a.facts.get("index"): a.facts.get("documents") for a in manifest.artifacts_of_kind(EXPORT_KIND)}
    if what is None and exports:
        return exports, True  # each counted while read, and checked against the index's stats
    indexes = manifest.facts.get("indexes") or {}
    return {uid: i.get("documents") for uid, i in indexes.items()}, False


def compare_counts(client: MeiliClient, expected: dict[str, int]) -> dict[str, Any]:
    stats = client.get("/stats").get("indexes") or {}
    live = {uid: s.get("numberOfDocuments") for uid, s in stats.items()}
    rows = [{"index": uid, "expected": n, "live": live.get(uid)} for uid, n in sorted(expected.items())]
    extra = sorted(set(live) - set(expected))
    return {"indexes": rows, "mismatches": [r for r in rows if r["expected"] != r["live"]], "extra": extra}


def restore_file(
    client: MeiliClient,
    repo: Any,
    manifest: Any,
    identities: list,
    *,
    what: str,
    path: Path,
    restart_command: str | None = None,
    api_url: str = "http://localhost:7700",
) -> dict[str, Any]:
    kind = SNAPSHOT_KIND if what == "snapshot" else DUMP_KIND
    found = manifest.artifacts_of_kind(kind)
    if not found:
        other = "--dump-to" if what == "snapshot" and manifest.artifacts_of_kind(DUMP_KIND) else None
        raise ConfigError(
            f"Backup {manifest.id} holds no {what} (it was taken with modes {manifest.facts.get('modes')}).",
            hint=f"Use {other}." if other else "Restore indexes from it with --index/--all, or pick another backup.",
        )
    art = found[0]
    backup_version = art.facts.get("meilisearch_version") or manifest.facts.get("meilisearch_version")
    warnings: list[str] = []
    live_version = _live_version(client, warnings)
    _check_version(what, backup_version, live_version, manifest)

    dest = path / art.name if path.is_dir() else path
    if dest.exists():
        raise RestoreTargetError(f"{dest} already exists; nothing was overwritten.", hint="Choose another path or remove it.")
    if not dest.parent.is_dir():
        raise RestoreTargetError(f"The folder {dest.parent} does not exist.", hint="Create it, or choose another path.")
    free = shutil.disk_usage(dest.parent).free
    need = art.raw_size + (16 << 20)
    if free < need:
        raise LocalResourceError(
            f"Writing the {what} needs {need >> 20} MiB in {dest.parent}, only {free >> 20} MiB free.",
            hint="Free space or choose a path on a larger disk.",
        )
    partial = dest.with_name(dest.name + ".partial")
    try:
        with open(partial, "xb") as fh:
            written = repo.read_artifact(art, fh, identities)
            fh.flush()
            os.fsync(fh.fileno())
        with open(partial, "rb") as fh:
            magic = fh.read(2)
        if written != art.raw_size or magic != b"\x1f\x8b":
            raise RestoreFailed(f"The {what} written to {partial} is not a whole gzip file "
                                f"({written} of {art.raw_size} bytes); it was removed.")
        os.replace(partial, dest)
    except FileExistsError:
        raise RestoreTargetError(f"{partial} exists (another restore?); nothing was overwritten.") from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise LocalResourceError(f"Writing {dest} failed: {exc.strerror or exc}.") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

    counts, exact = expected_counts(manifest, what)
    result: dict[str, Any] = {
        "backup": manifest.id,
        "what": what,
        "path": str(dest),
        "bytes": written,
        "meilisearch_version": backup_version,
        "live_version": live_version,
        "expected_counts": counts,
        "counts_exact": exact,
        "steps": import_steps(what, dest, backup_version, api_url, counts, manifest),
        "warnings": warnings,
    }
    if restart_command:
        result["restart"] = run_restart(client, restart_command, what, dest, counts, exact, warnings)
    return result


def _live_version(client: MeiliClient, warnings: list[str]) -> str | None:
    try:
        return client.version()
    except PosterityError as exc:
        warnings.append(f"could not ask the live server for its version ({exc.message}); "
                        "make sure the Meilisearch that imports the file has the version named below.")
        return None


def _check_version(what: str, backup: str | None, live: str | None, manifest: Any) -> None:
    if not backup or not live:
        return
    if what == "snapshot" and _version(live) != _version(backup):
        has_dump = bool(manifest.artifacts_of_kind(DUMP_KIND))
        raise VersionMismatch(
            f"The snapshot in backup {manifest.id} was taken with Meilisearch {backup}; the server at "
            f"{manifest.facts.get('url')} runs {live}. A snapshot opens only with the same version; nothing was written.",
            hint=(f"Use the dump of this backup instead: posterity restore {manifest.source} {manifest.id} --dump-to PATH."
                  if has_dump else
                  f"Run Meilisearch {backup} to import it, or restore indexes from a dump/export backup "
                  "(--index/--all); add mode dump to take portable backups."),
        )
    if what == "dump" and _version(live) < _version(backup):
        raise VersionMismatch(
            f"The dump in backup {manifest.id} was made by Meilisearch {backup}; the server runs the older {live}, "
            "which cannot import it; nothing was written.",
            hint=f"Upgrade Meilisearch to {backup} or newer first.",
        )


def import_steps(what: str, dest: Path, version: str | None, url: str, counts: dict[str, int], manifest: Any) -> list[str]:
    flag = FLAGS[what]
    need = f"Meilisearch {version} exactly" if what == "snapshot" else f"Meilisearch {version} or newer"
    expected = ", ".join(f"{uid}={n}" for uid, n in sorted(counts.items())) or "no index"
    return [
        "Stop Meilisearch (e.g. sudo systemctl stop meilisearch); pause the application's writes.",
        "Move the current database aside — Meilisearch never imports over an existing one: "
        "mv <db-path> <db-path>.before-restore",
        f"Start it once with the file, the same master key (so API keys keep their values) and {need}: "
        f"meilisearch --db-path <db-path> --master-key \"$MEILI_MASTER_KEY\" {flag} {shlex.quote(str(dest))}",
        f"Wait until it answers: until curl -fsS {url}/health; do sleep 1; done",
        f"Check the document counts ({expected}): posterity restore {manifest.source} {manifest.id} --check-counts",
        f"Remove {flag} from the service's start command (with a database present, a later start with it fails).",
    ]


def run_restart(client: MeiliClient, command: str, what: str, dest: Path, counts: dict[str, int], exact: bool,
                warnings: list[str]) -> dict[str, Any]:
    flag = FLAGS[what]
    cmd = command.replace("{flag}", flag).replace("{path}", shlex.quote(str(dest)))
    env = {**os.environ, "MEILI_IMPORT_FLAG": flag, "MEILI_IMPORT_PATH": str(dest)}
    try:
        proc = subprocess.run(cmd, shell=True, env=env, capture_output=True, text=True,
                              timeout=client.task_timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RestoreFailed(f"restart_command did not finish within {client.task_timeout:g} s.",
                            hint=f"The file is at {dest}; finish the steps by hand.") from exc
    if proc.returncode != 0:
        tail = " | ".join([ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-5:])
        raise RestoreFailed(f"restart_command failed (exit {proc.returncode}): {tail or 'no output'}",
                            hint=f"The file is at {dest}; fix the command or finish the steps by hand.")
    deadline = time.monotonic() + client.task_timeout
    while True:
        try:
            if (client.health() or {}).get("status") == "available":
                break
        except PosterityError:
            pass
        if time.monotonic() >= deadline:
            raise RestoreFailed(f"Meilisearch at {client.where} did not become healthy within {client.task_timeout:g} s "
                                "after restart_command.", hint="Look at Meilisearch's log; the import may have failed.")
        time.sleep(0.5)
    report = compare_counts(client, counts)
    if report["mismatches"]:
        text = ", ".join(f"{r['index']}: {r['live']} (backup {r['expected']})" for r in report["mismatches"])
        if exact:
            raise RestoreFailed(f"Meilisearch restarted on the {what}, but document counts differ: {text}.",
                                hint="Check Meilisearch's log and GET /tasks for failed imports.")
        warnings.append(f"document counts differ from those read at backup time ({text}); writes ran during "
                        "that backup, so the counts there were approximate.")
    return {"command": cmd, "health": "available", **report}
