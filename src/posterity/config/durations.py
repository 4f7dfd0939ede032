"""Human durations in posterity.toml: ``"90s"``, ``"30m"``, ``"26h"``, ``"14d"``, ``"52w"``, ``"1d12h"``.

Units: ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks, ``y`` years of
365 days. Months are not a unit on purpose: "1 month" has no fixed length, and retention
by calendar month is ``keep_monthly``.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_PART = re.compile(r"(\d+)\s*([smhdwy])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdwy]\s*)+$")


def parse_duration(text: str) -> timedelta:
    """``"1d12h"`` → ``timedelta(days=1, hours=12)``; ValueError with the accepted form."""
    if not isinstance(text, str) or not _WHOLE.match(text.lower()):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w, y), e.g. \"26h\", \"14d\", \"1d12h\""
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text.lower()))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest form ``parse_duration`` reads back (``timedelta(hours=36)`` → ``"1d12h"``)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def check_duration(value: str | None) -> str | None:
    """A pydantic validator body: accept ``None`` or a valid duration, unchanged."""
    if value is not None:
        parse_duration(value)
    return value
