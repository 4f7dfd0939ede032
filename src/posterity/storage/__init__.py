"""Object stores, chosen by URL scheme through a registry.

``open_store(url, ...)`` understands:
- ``file:///path`` — a local folder (``LocalStore``);
- ``s3://bucket/prefix`` with an optional endpoint (AWS S3, SeaweedFS, MinIO);
- ``r2://<account-id>/<bucket>/<prefix>`` — Cloudflare R2 (endpoint derived, region ``auto``);
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
    )


def _open_r2(url: str, **kw) -> ObjectStore:
    from .s3 import S3Store

    parsed = urlparse(url)
    account = parsed.netloc
    bucket, _, prefix = parsed.path.strip("/").partition("/")
    if not account or not bucket:
        raise ConfigError(f"{url!r} is not r2://<account-id>/<bucket>/<prefix>.")
    endpoint = kw.get("endpoint") or f"https://{account}.r2.cloudflarestorage.com"
    return S3Store(
        bucket,
        prefix,
        endpoint=endpoint,
        region="auto",
        access_key_id=kw.get("access_key_id"),
        secret_access_key=kw.get("secret_access_key"),
        scheme="r2",
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
