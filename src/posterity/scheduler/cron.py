"""Cron expressions, next-run computation and clocks.

Expressions are read by ``croniter`` in the daemon's time zone: five fields (minute hour
day-of-month month day-of-week) or six, where the first gives seconds (``*/10 * * * * *``).
Next runs are computed in wall-clock time of that zone and returned in UTC, so "02:00 in
Europe/Berlin" stays 02:00 across daylight-saving changes.

The clock is an object, not ``datetime.now``: the daemon asks it for the time and sleeps
through it, so tests drive schedules with ``ManualClock`` instead of waiting.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter


@dataclass(frozen=True)
class CronSpec:
    expr: str
    seconds: bool  # six fields, the first one seconds

    def next_after(self, when: datetime, tz: str = "UTC") -> datetime:
        """The first fire time strictly after ``when`` (UTC in, UTC out)."""
        zone = ZoneInfo(tz)
        start = when.astimezone(zone)
        it = croniter(self.expr, start, second_at_beginning=self.seconds)
        nxt: datetime = it.get_next(datetime)
        return nxt.astimezone(UTC)

    def fires_between(self, after: datetime, until: datetime, tz: str = "UTC", limit: int = 2) -> int:
        """How many fire times fall in ``(after, until]``, counting at most ``limit``."""
        n = 0
        t = after
        while n < limit:
            t = self.next_after(t, tz)
            if t > until:
                break
            n += 1
        return n


def parse_cron(expr: str) -> CronSpec:
    """Validate ``expr``; ValueError says what a cron expression looks like."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"{expr!r} is not a cron expression: write five fields, minute hour day month weekday "
            "(e.g. \"0 2 * * *\" for 02:00 daily), or six with seconds first"
        )
    seconds = len(fields) == 6
    try:
        croniter(expr, datetime(2024, 1, 1, tzinfo=UTC), second_at_beginning=seconds).get_next(datetime)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ValueError(f"{expr!r} is not a valid cron expression ({exc})") from exc
    return CronSpec(" ".join(fields), seconds)


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds`` or until ``stop`` is set; True when stopped."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told (``advance``) — or, by default, when slept on.

    With ``auto=True`` a ``sleep`` advances the time at once, so a scheduler loop runs
    through days of schedule in milliseconds; with ``auto=False`` sleepers wait until a
    test calls ``advance``.
    """

    def __init__(self, start: datetime, auto: bool = True) -> None:
        self._now = start
        self.auto = auto
        self._cond = threading.Condition()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += timedelta(seconds=seconds)
            self._cond.notify_all()

    def set(self, when: datetime) -> None:
        with self._cond:
            self._now = when
            self._cond.notify_all()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self.slept.append(seconds)
        if stop.is_set():
            return True
        if self.auto:
            self.advance(seconds)
            return stop.is_set()
        with self._cond:
            until = self._now + timedelta(seconds=seconds)
            while self._now < until and not stop.is_set():
                self._cond.wait(0.01)
        return stop.is_set()


def monotonic() -> float:
    return time.monotonic()
