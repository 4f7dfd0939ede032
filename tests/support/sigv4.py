"""A tiny AWS Signature Version 4 signer and raw S3 client for tests.

Enough to create buckets and to hand-craft requests (e.g. multipart uploads with
unequal parts, or requests carrying checksum headers) that obstore would never send.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

import httpx

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_WS = re.compile(r"\s+")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(value: str, *, keep_slash: bool) -> str:
    return quote(value, safe="/-_.~" if keep_slash else "-_.~")


def sign_headers(
    method: str,
    url: str,
    *,
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
    service: str = "s3",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus ``host``, ``x-amz-date``, ``x-amz-content-sha256`` and
    ``authorization`` for a header-signed SigV4 request.

    ``url`` must already be percent-encoded the way it will be sent; its query string
    is canonicalised here.  All given headers are signed.
    """
    parts = urlsplit(url)
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = now.strftime("%Y%m%d")
    payload_hash = payload_hash or hashlib.sha256(body).hexdigest()

    out: dict[str, str] = {k.lower(): str(v) for k, v in (headers or {}).items()}
    out["host"] = parts.netloc
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash

    # Canonical query string: split, decode nothing (callers pass encoded values),
    # re-encode keys/values strictly, sort.
    pairs: list[tuple[str, str]] = []
    if parts.query:
        for item in parts.query.split("&"):
            key, _, value = item.partition("=")
            pairs.append(
                (
                    _uri_encode(unquote(key), keep_slash=False),
                    _uri_encode(unquote(value), keep_slash=False),
                )
            )
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(pairs))

    canonical_path = _uri_encode(unquote(parts.path or "/"), keep_slash=True)
    signed = sorted(out)
    canonical_headers = "".join(
        name + ":" + _WS.sub(" ", out[name].strip()) + "\n" for name in signed
    )
    signed_headers = ";".join(signed)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_path,
            canonical_query,
            canonical_headers,
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{datestamp}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    signing_key = _hmac(("AWS4" + secret_key).encode(), datestamp)
    signing_key = _hmac(signing_key, region)
    signing_key = _hmac(signing_key, service)
    signing_key = _hmac(signing_key, "aws4_request")
    signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out


@dataclass
class RawS3:
    """Minimal signed S3 client (path-style) built on httpx."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    timeout: float = 30.0

    def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        unsigned_payload: bool = False,
    ) -> httpx.Response:
        """Send a signed request; ``path`` like ``/bucket/key`` (unencoded)."""
        url = self.endpoint.rstrip("/") + _uri_encode(path, keep_slash=True)
        if query:
            url += "?" + query
        signed = sign_headers(
            method,
            url,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            headers=headers,
            body=body,
            payload_hash=UNSIGNED_PAYLOAD if unsigned_payload else None,
        )
        with httpx.Client(timeout=self.timeout) as client:
            return client.request(method, url, content=body, headers=signed)

    def create_bucket(self, bucket: str) -> None:
        resp = self.request("PUT", f"/{bucket}")
        if resp.status_code not in (200, 409):
            raise RuntimeError(f"create bucket {bucket}: HTTP {resp.status_code} {resp.text}")

    # -- multipart helpers -------------------------------------------------------------

    def create_multipart_upload(self, bucket: str, key: str) -> str:
        resp = self.request("POST", f"/{bucket}/{key}", query="uploads=")
        resp.raise_for_status()
        match = re.search(r"<UploadId>([^<]+)</UploadId>", resp.text)
        if not match:
            raise RuntimeError(f"no UploadId in {resp.text!r}")
        return match.group(1)

    def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes
    ) -> str:
        resp = self.request(
            "PUT",
            f"/{bucket}/{key}",
            query=f"partNumber={part_number}&uploadId={quote(upload_id, safe='')}",
            body=data,
        )
        resp.raise_for_status()
        return resp.headers["etag"]

    def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, etags: list[str]
    ) -> httpx.Response:
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            for n, etag in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        return self.request(
            "POST",
            f"/{bucket}/{key}",
            query=f"uploadId={quote(upload_id, safe='')}",
            body=body,
            headers={"content-type": "application/xml"},
        )
