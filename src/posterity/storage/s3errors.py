"""obstore's exceptions, turned into Posterity's error tree at the S3 adapter's edge.

R2 and S3 name what went wrong in an XML ``<Code>``; obstore's messages carry it somewhere
in a long text that starts with the request URL (an upload's URL alone can pass 300
characters), so the code is pulled out and always shown.
"""

from __future__ import annotations

import re

import obstore

from ..errors import (
    BucketNotFound,
    ConfigError,
    ObjectExists,
    ObjectNotFound,
    PosterityError,
    StorageAuthError,
    StorageError,
    StorageUnreachable,
    WriteConflict,
)

_CODE = re.compile(r"<Code>\s*([A-Za-z0-9]+)\s*</Code>")
_STATUS = re.compile(r"\b(?:status(?: code)?:?\s*|returned\s+)(\d{3})\b", re.IGNORECASE)


def error_code(text: str) -> str | None:
    """The S3/R2 error code named in an obstore message (``NoSuchKey``, ``SlowDown`` …)."""
    m = _CODE.search(text)
    return m.group(1) if m else None


def _status(text: str) -> int | None:
    m = _STATUS.search(text)
    return int(m.group(1)) if m else None


def map_error(exc: BaseException, key: str, location: str) -> PosterityError:
    """Turn an obstore/IO exception into Posterity's own, with a hint."""
    text = str(exc)
    low = text.lower()
    code = error_code(text)
    status = _status(text)
    if status == 409 or (code or "").lower() in ("conditionalrequestconflict", "operationaborted"):
        # Not "already exists": R2 answers 409 while another conditional write to the key
        # is in flight, and the key may well be absent.
        return WriteConflict(f"A concurrent write to {key} in {location} conflicted with this one ({code or '409'}).")
    if isinstance(exc, obstore.exceptions.AlreadyExistsError) or "precondition" in low:
        return ObjectExists(f"Object {key} already exists in {location}.")
    if "nosuchbucket" in low or "bucket does not exist" in low or "specified bucket does not exist" in low:
        return BucketNotFound(f"The bucket of {location} does not exist.")
    if isinstance(exc, FileNotFoundError | obstore.exceptions.NotFoundError) or "nosuchkey" in low:
        return ObjectNotFound(f"Object {key} does not exist in {location}.")
    if isinstance(
        exc, obstore.exceptions.PermissionDeniedError | obstore.exceptions.UnauthenticatedError
    ) or any(
        s in low
        for s in (
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "accessdenied",
            "access denied",
            "403 forbidden",
            "401 unauthorized",
        )
    ):
        return StorageAuthError(f"{location} refused the credentials while accessing {key}.")
    if status == 429 or code in ("TooManyRequests", "SlowDown"):
        return StorageError(
            f"{location} kept refusing requests for {key} as too many ({code or '429'}), after retries.",
            hint="R2 allows one write per second to one key: check that no other writer uses this repository, "
            "then retry.",
        )
    if any(s in low for s in ("connection refused", "error sending request", "dns error", "timed out", "connect")):
        return StorageUnreachable(f"Could not reach {location} while accessing {key} (or it stopped answering).")
    if "config error" in low or isinstance(exc, obstore.exceptions.UnknownConfigurationKeyError):
        first = text.strip().splitlines()[0]
        return ConfigError(f"The object store client for {location} is misconfigured: {first[:300]}",
                           hint="Check [repository] in posterity.toml.")
    # Never echo a URL with credentials; obstore's messages contain none, only the path.
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    shown = first if len(first) <= 300 else first[:300] + "…"
    named = f" [{code}]" if code and code not in shown else ""
    return StorageError(f"Object store error on {key} at {location}{named}: {shown}")
