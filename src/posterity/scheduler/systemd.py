"""systemd unit and timer files for the [[schedule]] jobs, for those who prefer timers.

Each job becomes ``posterity-<name>.service`` (a oneshot: back up the job's sources with
its tag, then prune them) and ``posterity-<name>.timer``, whose ``OnCalendar=`` is the
job's cron expression translated exactly (``Persistent=true`` gives the same single
catch-up run after downtime as the daemon; ``RandomizedDelaySec=`` is the jitter). A
``posterity-daemon.service`` is printed too, for running the daemon under systemd instead,
and a ``posterity-walstream-<source>.service`` per streaming source (``wal = "stream"``) for
timer users (the daemon streams by itself).

Cron's rule that a restricted day-of-month and day-of-week match when *either* does has
no OnCalendar equivalent; such an expression is refused with a hint to split it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from croniter import croniter

from .. import kinds
from ..config.durations import parse_duration
from ..errors import ConfigError

_DOW = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]


def _ranges(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in sorted(set(values)):
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _field(values: list[Any], width: int) -> str:
    if values == ["*"]:
        return "*"
    if not all(isinstance(v, int) for v in values):
        raise ValueError("only numbers, ranges, lists and steps can be translated")
    parts = []
    for a, b in _ranges(values):
        fa, fb = f"{a:0{width}d}", f"{b:0{width}d}"
        parts.append(fa if a == b else (f"{fa},{fb}" if b == a + 1 else f"{fa}..{fb}"))
    return ",".join(parts)


def cron_to_oncalendar(expr: str, tz: str = "UTC") -> str:
    """``"0 3 * * 0"`` → ``"Sun *-*-* 03:00:00 UTC"``."""
    fields = expr.split()
    seconds = len(fields) == 6
    try:
        expanded, _ = croniter.expand(expr, second_at_beginning=seconds)
        if seconds:
            minute, hour, dom, month, dow, sec = expanded
        else:
            minute, hour, dom, month, dow = expanded
            sec = [0]
        if dom != ["*"] and dow != ["*"]:
            raise ValueError(
                "cron runs it when either the day of month or the weekday matches, which OnCalendar cannot say; "
                "split it into two [[schedule]] entries"
            )
        days = ""
        if dow != ["*"]:
            names = sorted({int(d) % 7 for d in dow})
            days = ",".join(_DOW[a] if a == b else f"{_DOW[a]}..{_DOW[b]}" for a, b in _ranges(names)) + " "
        date = f"*-{_field(month, 2)}-{_field(dom, 2)}"
        time = f"{_field(hour, 2)}:{_field(minute, 2)}:{_field(sec, 2)}"
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"The cron expression {expr!r} cannot be written as a systemd OnCalendar ({exc}).") from exc
    return f"{days}{date} {time} {tz}"


def units(config: Any, config_path: Path, binary: str) -> dict[str, str]:
    """File name → contents for every job, plus the daemon service."""
    base = f"{shlex.quote(binary)} --config {shlex.quote(str(config_path))}"
    tz = config.daemon.timezone
    out: dict[str, str] = {}
    for job in config.schedule:
        sources = list(job.sources) or sorted(config.sources)
        tag = f" --tag {shlex.quote(job.tag)}" if job.tag else ""
        names = " ".join(shlex.quote(s) for s in sources)
        prune = " ".join(f"--source {shlex.quote(s)}" for s in sources)
        lines = [
            "[Unit]",
            f"Description=Posterity backup job {job.name}: {', '.join(sources)}",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart={base} backup{tag} {names}",
        ]
        if config.daemon.prune:
            lines.append(f"ExecStart={base} prune {prune}")
        # A oneshot's start has no time limit by default: bound the whole run by the
        # job's timeout (systemd then sends SIGTERM: a clean stop within seconds).
        limit = int(parse_duration(job.timeout).total_seconds()) + 60
        lines += [f"TimeoutStartSec={limit}", "TimeoutStopSec=30",
                  "Nice=10", "IOSchedulingClass=best-effort", "IOSchedulingPriority=7", ""]
        out[f"posterity-{job.name}.service"] = "\n".join(lines)
        jitter = int(parse_duration(job.jitter).total_seconds())
        timer = [
            "[Unit]",
            f"Description=Run the Posterity job {job.name} ({job.cron})",
            "",
            "[Timer]",
            f"OnCalendar={cron_to_oncalendar(job.cron, tz)}",
            "Persistent=true",
            "AccuracySec=1s",
        ]
        if jitter:
            timer.append(f"RandomizedDelaySec={jitter}")
        timer += ["", "[Install]", "WantedBy=timers.target", ""]
        out[f"posterity-{job.name}.timer"] = "\n".join(timer)
    for name, src in sorted(config.sources.items()):
        if kinds.runs_wal_streamer(src):
            out[f"posterity-walstream-{name}.service"] = "\n".join([
                "[Unit]",
                f"Description=Posterity WAL streaming for {name} (with the timers; the daemon runs it itself)",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=simple",
                f"ExecStart={base} wal stream --source {shlex.quote(name)}",
                "Restart=always",
                "RestartSec=10",
                "TimeoutStopSec=30",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
                "",
            ])
    stop = int(parse_duration(config.daemon.stop_timeout).total_seconds()) + 10
    out["posterity-daemon.service"] = "\n".join([
        "[Unit]",
        "Description=Posterity backup daemon (runs every [[schedule]] job; use instead of the timers)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={base} daemon",
        "Restart=on-failure",
        "RestartSec=30",
        f"TimeoutStopSec={stop}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
    return out
