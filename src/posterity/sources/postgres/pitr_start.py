"""``restore pitr --start``: start PostgreSQL on the restored directory and wait for the target.

The server runs as the PostgreSQL OS user on 127.0.0.1 and the port asked for (a free one
otherwise), with its Unix socket in the data directory (or a private temp folder when that
path is too long for a socket), logging to ``posterity-restore.log`` in the data directory.
Progress is read from that log — it needs no login — and the point reached is then asked
over the socket with psql (when the OS user may log in as itself).

Done means: "pausing at the end of recovery" (target reached, action pause), or "ready to
accept connections" (promoted: target reached with action promote, or the end of the
archive). A server that exits first failed; its log says why.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from ...errors import RestoreFailed, SourceTimeout
from ...localpg import find_binary, pg_ctl, postmaster_alive, psql
from ...localpg.ports import free_port
from .pitr_plan import Plan

LOG_NAME = "posterity-restore.log"
_STOP = re.compile(r"recovery stopping (before|after) .*", re.I)
_LAST_TX = re.compile(r"last completed transaction was at log time (.+)$", re.M)
_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
_FAIL = re.compile(r"^.*\b(FATAL|PANIC):\s+(.*)$", re.M)


def _socket_dir(target: Path, owner: pwd.struct_passwd) -> Path:
    if len(str(target)) + len("/.s.PGSQL.65535.lock") < 100:
        return target
    d = Path(tempfile.mkdtemp(prefix="posterity-sock-"))
    if os.geteuid() == 0:
        os.chown(d, owner.pw_uid, owner.pw_gid)
    return d


def _ensure_configs(target: Path, owner: pwd.struct_passwd, notes: list[str]) -> None:
    """Debian keeps postgresql.conf and pg_hba.conf in /etc: give the copy minimal ones."""
    minimal = {
        "postgresql.conf": "# written by posterity restore pitr: the backup held no postgresql.conf\n",
        "pg_hba.conf": "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n",
        "pg_ident.conf": "",
    }
    for name, body in minimal.items():
        p = target / name
        if not p.exists():
            p.write_text(body)
            os.chmod(p, 0o600)
            if os.geteuid() == 0:
                os.chown(p, owner.pw_uid, owner.pw_gid)
            notes.append(f"wrote a minimal {name} (the backup held none)")


def start_and_wait(target: Path, req: Any, plan: Plan, owner: pwd.struct_passwd, major: int) -> dict[str, Any]:
    bin_dir = find_binary("pg_ctl", major or None, req.bin_dir).parent
    port = req.port or free_port()
    sock = _socket_dir(target, owner)
    log_file = target / LOG_NAME
    _ensure_configs(target, owner, req.notes)
    opts = " ".join(shlex.quote(o) for o in [
        "-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
        "-c", "logging_collector=off", "-c", "log_destination=stderr", "-c", "hot_standby=on",
    ])
    try:  # -W: pg_ctl returns once the postmaster is launched; _wait below bounds the recovery
        proc = pg_ctl(bin_dir, owner, ["start", "-D", str(target), "-l", str(log_file), "-W", "-o", opts],
                      cwd=str(target), timeout=PG_CTL_TIMEOUT)
    except SourceTimeout as exc:
        raise RestoreFailed(f"pg_ctl start did not return within {PG_CTL_TIMEOUT}s on {target}.",
                            hint=f"The directory is restored and configured; see {log_file}.") from exc
    if proc.returncode != 0:
        raise RestoreFailed(f"pg_ctl start failed on {target}: {(proc.stderr or proc.stdout).strip()[:500]}",
                            hint=f"The directory is restored and configured; see {log_file}.")
    state = _wait(target, log_file, req.wait_timeout, req.target.action if req.target.kind else "promote")
    out: dict[str, Any] = {"started": True, "port": port, "socket_dir": str(sock), "log": str(log_file), "state": state}
    text = log_file.read_text(errors="replace")
    m = _STOP.search(text)
    if m:
        out["stopped"] = m.group(0).strip()
    m2 = _LAST_TX.findall(text)
    if m2:
        out["last_transaction"] = m2[-1].strip()
    m3 = _TIMELINE.findall(text)
    if m3:
        out["new_timeline"] = int(m3[-1])
    out.update(_query(bin_dir, sock, port, owner))
    return out


def _wait(target: Path, log_file: Path, timeout: float, action: str) -> str:
    began = time.monotonic()
    deadline = began + timeout
    seen_pid = False
    while time.monotonic() < deadline:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        if "pausing at the end of recovery" in text or "recovery has paused" in text:
            return "paused"
        if "database system is ready to accept connections" in text:
            return "promoted"
        if action == "shutdown" and "shutdown at recovery target" in text:
            return "shut down"
        alive = postmaster_alive(target)
        seen_pid = seen_pid or alive
        if not alive and (seen_pid or time.monotonic() - began > 15):
            fails = [f"{lvl}: {msg}" for lvl, msg in _FAIL.findall(text)]
            why = fails[-1] if fails else (text.strip().splitlines()[-1] if text.strip() else "no log output")
            hint = f"The full log is {log_file}; the directory is left as it is for inspection."
            if "recovery ended before configured recovery target was reached" in text:
                hint = ("The archive holds no transaction at or after the target yet (WAL up to it was stored, "
                        "but nothing past it). Restore to latest, or an earlier target, with --force; or wait "
                        f"for more WAL to be stored. {hint}")
            raise RestoreFailed(f"PostgreSQL stopped during recovery of {target}: {why}", hint=hint)
        time.sleep(0.2)
    raise RestoreFailed(f"Recovery of {target} did not reach its target within {timeout:.0f}s; the server is still running.",
                        hint=f"Follow {log_file}; stop it with pg_ctl -D {target} stop.")


PG_CTL_TIMEOUT = 120
QUERY_TIMEOUT = 30


def _query(bin_dir: Path, sock: Path, port: int, owner: pwd.struct_passwd) -> dict[str, Any]:
    sql = ("select pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(), "
           "(select timeline_id from pg_control_checkpoint())")
    try:
        proc = psql(bin_dir, owner, host=sock, port=port, commands=[sql], flags=("-X", "-At", "-F", "|"),
                    timeout=QUERY_TIMEOUT)
    except SourceTimeout:  # the server is up; only its facts are missing from the report
        return {"query_error": f"psql did not answer within {QUERY_TIMEOUT}s"}
    if proc.returncode != 0:
        return {"query_error": proc.stderr.strip()[:300]}
    fields = (proc.stdout.strip().splitlines() or [""])[-1].split("|")
    if len(fields) < 4:
        return {}
    return {"in_recovery": fields[0] == "t", "replay_lsn": fields[1] or None,
            "replay_time": fields[2] or None, "timeline": int(fields[3]) if fields[3].isdigit() else None}
