"""Object stores, chosen by URL scheme through a registry.

``open_store(url, ...)`` understands:
- ``file:///path`` — a local folder (``LocalStore``);
- ``s3://bucket/prefix`` with an optional endpoint (AWS S3, SeaweedFS, MinIO);
- ``r2://<account-id>/<bucket>/<prefix>`` — Cloudflare R2 (endpoint derived, region ``auto``);
  a bucket in a jurisdiction is ``r2://<account-id>.eu/…`` or ``r2://<account-id>.fedramp/…``
  (endpoint ``https://<account-id>.<jurisdiction>.r2.cloudflarestorage.com``);
- ``memory://name`` — in-process, for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from ..errors import ConfigError
from .base import MIN_PART_SIZE, ObjectInfo, ObjectStore, choose_part_size
from .local import LocalStore
from .memory import MemoryStore

__all__ = ["MIN_PART_SIZE", "ObjectInfo", "ObjectStore", "choose_part_size", "open_store"]

_memory_stores: dict[str, MemoryStore] = {}


def _open_file(url: str, **_: object) -> ObjectStore:
    parsed = urlparse(url)
    path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
    if not path:
        raise ConfigError(f"{url!r} names no folder.", hint="Write file:///absolute/path.")
    return LocalStore(path)


def _open_memory(url: str, **_: object) -> ObjectStore:
    name = urlparse(url).netloc or "default"
    return _memory_stores.setdefault(name, MemoryStore(name))


R2_JURISDICTIONS = ("eu", "fedramp")


def _s3_tuning(kw: dict) -> dict:
    """Timeouts and the part-size ceiling from [repository] (defaults when absent)."""
    from .base import MiB
    from .s3client import Timeouts

    base = Timeouts()
    connect = float(kw.get("connect_timeout") or base.connect)
    request = float(kw.get("request_timeout") or base.request)
    timeouts = Timeouts(connect=connect, request=request, retry=request + 15, idle=min(base.idle, request))
    ceiling = kw.get("max_part_size_mib")
    return {"timeouts": timeouts, "max_part_size": int(ceiling) * MiB if ceiling else None}


def _open_s3(url: str, **kw) -> ObjectStore:
    from .s3 import S3Store

    parsed = urlparse(url)
    if not parsed.netloc:
        raise ConfigError(f"{url!r} names no bucket.", hint="Write s3://bucket/prefix.")
    return S3Store(
        parsed.netloc,
        parsed.path.strip("/"),
        endpoint=kw.get("endpoint"),
        region=kw.get("region") or "auto",
        access_key_id=kw.get("access_key_id"),
        secret_access_key=kw.get("secret_access_key"),
        **_s3_tuning(kw),
    )


def _open_r2(url: str, **kw) -> ObjectStore:
    from .s3 import S3Store

    parsed = urlparse(url)
    account, _, jurisdiction = parsed.netloc.partition(".")
    bucket, _, prefix = parsed.path.strip("/").partition("/")
    if not account or not bucket:
        raise ConfigError(f"{url!r} is not r2://<account-id>/<bucket>/<prefix>.")
    if jurisdiction and jurisdiction not in R2_JURISDICTIONS:
        raise ConfigError(
            f"{url!r} names the R2 jurisdiction {jurisdiction!r}, which is not one of {', '.join(R2_JURISDICTIONS)}.",
            hint="Write r2://<account-id>/<bucket>/<prefix>, or r2://<account-id>.eu/… for an EU bucket "
            "(r2://<account-id>.fedramp/… for FedRAMP).",
        )
    host = f"{account}.{jurisdiction}" if jurisdiction else account
    endpoint = kw.get("endpoint") or f"https://{host}.r2.cloudflarestorage.com"
    return S3Store(
        bucket,
        prefix,
        endpoint=endpoint,
        region="auto",
        access_key_id=kw.get("access_key_id"),
        secret_access_key=kw.get("secret_access_key"),
        scheme="r2",
        **_s3_tuning(kw),
    )


STORES: dict[str, Callable[..., ObjectStore]] = {
    "file": _open_file,
    "memory": _open_memory,
    "s3": _open_s3,
    "r2": _open_r2,
}


def open_store(url: str, **options: object) -> ObjectStore:
    scheme = urlparse(url).scheme
    opener = STORES.get(scheme)
    if opener is None:
        raise ConfigError(
            f"Unknown repository url scheme {scheme!r} in {url!r}.",
            hint=f"Use one of: {', '.join(sorted(STORES))}.",
        )
    return opener(url, **options)
