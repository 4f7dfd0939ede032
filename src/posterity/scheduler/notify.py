"""Telling a person: apprise notifications and healthchecks-style pings.

Events (``[notify] events`` chooses which are sent):
- ``failure``: a source's backup failed after its retries (or prune failed);
- ``recovery``: a source that was failing has a successful backup again;
- ``stale``: a source's newest backup is older than its max_age (once per episode);
- ``size_anomaly``: a backup much smaller than the median of the previous ones;
- ``success``: every successful backup (noisy; off by default).

Pings follow healthchecks.io's protocol — ``GET URL/start``, ``GET URL`` on success,
``GET URL/fail`` on failure — so any dead-man's-switch service that speaks it alerts when
a scheduled job stops running at all, which no notification from the daemon itself can.

Nothing here ever raises: a notification that cannot be delivered is logged, and the
backup it was about is not affected.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import ConfigError

log = logging.getLogger(__name__)

_TYPES = {"failure": "failure", "recovery": "success", "stale": "warning", "size_anomaly": "warning",
          "success": "success"}


@dataclass
class Sent:
    event: str
    title: str
    body: str
    delivered: bool


@dataclass
class Notifier:
    urls: list[str]
    events: set[str]
    timeout: float = 10.0
    sent: list[Sent] = field(default_factory=list)
    _apprise: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, cfg: Any) -> Notifier:
        urls = [u.get_secret_value() if hasattr(u, "get_secret_value") else str(u) for u in cfg.urls]
        n = cls(urls, set(cfg.events))
        n._load()
        return n

    def _load(self) -> None:
        if not self.urls:
            return
        import apprise

        a = apprise.Apprise()
        bad = [i for i, u in enumerate(self.urls) if not a.add(u)]
        if bad:
            raise ConfigError(
                f"notify.urls{bad} {'is' if len(bad) == 1 else 'are'} not a URL apprise understands.",
                hint="See https://github.com/caronc/apprise/wiki for the URL of each service "
                "(e.g. slack://…, mailto://…, json://host/path for a webhook).",
            )
        self._apprise = a

    def event(self, kind: str, title: str, body: str) -> bool:
        """Send one event if it is enabled; True when every URL took it."""
        if kind not in self.events or self._apprise is None:
            return False
        import apprise

        try:
            with self._lock:  # apprise objects are not documented as thread-safe
                ok = bool(self._apprise.notify(body=body, title=f"[posterity] {title}",
                                               notify_type=apprise.NotifyType(_TYPES[kind])))
        except Exception as exc:
            log.warning("Could not send the %s notification (%s).", kind, exc)
            ok = False
        if not ok:
            log.warning("The %s notification %r was not delivered to every URL.", kind, title)
        self.sent.append(Sent(kind, title, body, ok))
        return ok


def ping(url: str | None, what: str, timeout: float = 10.0) -> bool:
    """Healthchecks-style ping (HTTP GET): ``what`` is ``start``, ``success`` or ``fail``."""
    if not url:
        return False
    target = url.rstrip("/") + {"start": "/start", "success": "", "fail": "/fail"}[what]
    for attempt in (1, 2):
        try:
            r = httpx.get(target, timeout=timeout)
            if r.status_code < 400:
                return True
            log.warning("Ping %s answered HTTP %s.", _safe(target), r.status_code)
            return False
        except httpx.HTTPError as exc:
            if attempt == 2:
                log.warning("Could not ping %s (%s).", _safe(target), exc)
    return False


def _safe(url: str) -> str:
    """A ping URL's secret is its path (the check's uuid): log only the host."""
    return httpx.URL(url).host or "?"
