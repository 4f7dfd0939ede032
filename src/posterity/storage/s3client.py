"""Build the obstore S3 client from Posterity's configuration alone.

obstore's ``S3Store`` starts from ``AmazonS3Builder::from_env``: every ``AWS_*`` variable of
the host changes the requests it sends. Hosts that run other S3 tools often set some, and
each one breaks a repository in its own way (``AWS_CHECKSUM_ALGORITHM=CRC32``: the store
cannot even be built; ``AWS_SESSION_TOKEN``: R2 answers 403; ``AWS_CONDITIONAL_PUT=disabled``:
every create-only write fails; ``AWS_REQUEST_PAYER``: a header R2 does not implement). So
the client is built with every ``AWS_*`` variable hidden from the builder, and Posterity
honours exactly two of them, read here and passed explicitly:

- ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, only when ``[repository]`` gives no
  credentials (``${VAR}`` in posterity.toml is the documented way; these keep older setups
  working).

Timeouts (``Timeouts``; the figures are in docs/architecture.md): a stalled connection —
one that accepts and never answers, or stops reading mid-upload — fails each attempt within
``request_timeout`` and is retried (obstore retries timeouts, connection errors, 5xx and 429)
with backoff until the retry window (``request_timeout`` + 15 s) has passed since the first
attempt; so one request gives up after at most about ``2 × request_timeout + 25 s`` (145 s
with the defaults). A create-only PUT that fails so then checks the key (a HEAD, bounded the
same way) before it reports or resends, so it is bounded by three such budgets.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from obstore.store import S3Store as _ObS3Store

from ..errors import ConfigError

HONOURED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_ENV_LOCK = threading.Lock()


@dataclass(frozen=True)
class Timeouts:
    """Bounds on one object-store call, in seconds."""

    connect: float = 10.0  # TCP + TLS handshake
    request: float = 60.0  # one whole HTTP request, including the upload of one part
    # No new attempt starts this long after the first one. It must outlast one timed-out
    # attempt, or a stalled request is never retried: request + 15 s allows one more.
    retry: float = 75.0
    idle: float = 30.0  # a read that waits longer fails; pooled connections idle longer are dropped
    max_retries: int = 5

    @property
    def worst_case(self) -> float:
        """About the longest one call can take before it raises (the figure the docs state)."""
        return self.retry + self.request + 10.0


@contextmanager
def _without_aws_env() -> Iterator[None]:
    """Hide every AWS_* variable from the builder while the client is built.

    The builder reads the environment only while it is built (credentials given explicitly
    leave nothing for a provider to read later). The lock serialises builds in this process.
    """
    with _ENV_LOCK:
        saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        for k in saved:
            del os.environ[k]
        try:
            yield
        finally:
            os.environ.update(saved)


def client_options(endpoint: str | None, t: Timeouts) -> dict[str, Any]:
    options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=t.connect),
        "timeout": timedelta(seconds=t.request),
        "read_timeout": timedelta(seconds=min(t.idle, t.request)),
        "pool_idle_timeout": timedelta(seconds=t.idle),
    }
    if endpoint and endpoint.startswith("http://"):
        options["allow_http"] = True
    return options


def retry_config(t: Timeouts) -> dict[str, Any]:
    return {
        "max_retries": t.max_retries,
        "retry_timeout": timedelta(seconds=t.retry),
        # At least 0.5 s per retry: R2 answers a second write to one key within a second with
        # 429, and two retries must then span that second.
        "backoff": {"init_backoff": timedelta(milliseconds=500), "max_backoff": timedelta(seconds=10), "base": 2},
    }


def build_client(
    bucket: str,
    prefix: str,
    *,
    endpoint: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    unsigned_payload: bool,
    timeouts: Timeouts,
    location: str,
) -> _ObS3Store:
    """An obstore S3Store configured from these arguments and nothing else."""
    if not access_key_id and not secret_access_key:
        access_key_id = os.environ.get("AWS_ACCESS_KEY_ID") or None
        secret_access_key = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
    config: dict[str, Any] = {"region": region or "auto"}
    if endpoint:
        config["endpoint"] = endpoint
    if access_key_id:
        config["access_key_id"] = access_key_id
    if secret_access_key:
        config["secret_access_key"] = secret_access_key
    try:
        with _without_aws_env():
            return _ObS3Store(
                bucket,
                prefix=prefix or None,
                client_options=client_options(endpoint, timeouts),  # type: ignore[arg-type]
                retry_config=retry_config(timeouts),  # type: ignore[arg-type]
                virtual_hosted_style_request=False,
                # Single-key DELETEs: the bulk DeleteObjects call must carry a body checksum
                # header that R2 lists as unimplemented.
                disable_bulk_delete=True,
                unsigned_payload=unsigned_payload,
                conditional_put="etag",
                **config,
            )
    except Exception as exc:
        # obstore names the setting but never the secret values (checked in tests).
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"The object store client for {location} could not be configured: {first}",
            hint="Check [repository] url, endpoint and region in posterity.toml.",
        ) from exc
