"""An HTTP proxy that enforces Cloudflare R2's S3 quirks in front of SeaweedFS.

R2 differs from AWS S3 in ways that bite real clients:

* it rejects ``aws-chunked`` / ``STREAMING-*`` payloads and trailing checksums
  (``x-amz-trailer``), and -- as modelled here -- the ``x-amz-checksum-*`` /
  ``x-amz-sdk-checksum-algorithm`` headers that recent AWS SDKs send by default;
* all parts of a multipart upload except the last must have the same size
  (and, as on S3, be at least 5 MiB), with at most 10,000 parts.

The proxy records every request, forwards allowed ones unchanged (including the
``Host`` header, so SigV4 signatures remain valid) and streams bodies.  Fault hooks
let reliability tests inject 5xx responses or connection resets.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
_CHUNK = 256 * 1024

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}


@dataclass
class Recorded:
    """One request as seen by the proxy."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body_length: int = 0
    status: int | None = None
    rejected: str | None = None  # reason, when the proxy refused it
    fault: str | None = None  # injected fault, if any
    started: float = field(default_factory=time.monotonic)

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def is_upload_part(self) -> bool:
        p = self.params
        return self.method == "PUT" and "partNumber" in p and "uploadId" in p

    @property
    def is_create_multipart(self) -> bool:
        return self.method == "POST" and "uploads" in self.params

    @property
    def is_complete_multipart(self) -> bool:
        return self.method == "POST" and "uploadId" in self.params


@dataclass
class Fault:
    kind: str  # "status" | "reset" | "lost_reply" | "cut" | "stall"
    method: str | None
    path_contains: str | None
    times: int
    status: int = 503
    code: str = "ServiceUnavailable"
    query_contains: str | None = None
    cut_after: int = 0  # "cut": response body bytes sent before the connection is dropped
    seconds: float = 0.0  # "stall": how long to hold the request before handling it

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        return not (self.query_contains is not None and self.query_contains not in query)


def _xml_error(code: str, message: str, resource: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>r2proxy</RequestId></Error>"
    ).encode()


class R2Violation(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class R2Proxy:
    """Proxy on 127.0.0.1 enforcing R2 rules in front of an S3 ``upstream``."""

    def __init__(self, upstream: str, *, reject_checksum_headers: bool = True) -> None:
        """``reject_checksum_headers=False`` lets ``x-amz-checksum-*`` /
        ``x-amz-sdk-checksum-algorithm`` headers through (streaming/trailer payloads
        are still rejected)."""
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream
        self.reject_checksum_headers = reject_checksum_headers
        self._up_host = parts.hostname
        self._up_port = parts.port or 80
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._faults: list[Fault] = []
        # uploadId -> {partNumber: size} for successfully uploaded parts
        self.parts: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self.port = 0

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._server is not None:
            return
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"r2proxy-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> R2Proxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- fault hooks

    def fail_next(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        status: int = 503,
        times: int = 1,
        code: str | None = None,
        query_contains: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (not forwarded)."""
        default_code = {500: "InternalError", 503: "SlowDown", 429: "SlowDown"}.get(
            status, "ServiceUnavailable"
        )
        with self._lock:
            self._faults.append(
                Fault(
                    "status",
                    method,
                    path_contains,
                    times,
                    status,
                    code or default_code,
                    query_contains,
                )
            )

    def reset_connection_next(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        times: int = 1,
        query_contains: str | None = None,
    ) -> None:
        """Abort the TCP connection (RST) for the next ``times`` matching requests."""
        with self._lock:
            self._faults.append(
                Fault("reset", method, path_contains, times, query_contains=query_contains)
            )

    def lose_reply_next(
        self, method: str | None = None, path_contains: str | None = None, times: int = 1,
        query_contains: str | None = None,
    ) -> None:
        """Forward the next matching requests (the upstream acts on them), then reset the
        client's connection instead of answering: the write happened, the client cannot know."""
        with self._lock:
            self._faults.append(Fault("lost_reply", method, path_contains, times, query_contains=query_contains))

    def cut_body_next(
        self, method: str | None = None, path_contains: str | None = None, times: int = 1,
        after_bytes: int = 0, query_contains: str | None = None,
    ) -> None:
        """Answer the next matching requests with the upstream's status and headers but only
        ``after_bytes`` bytes of the body, then drop the connection (a response cut mid-body)."""
        with self._lock:
            self._faults.append(
                Fault("cut", method, path_contains, times, query_contains=query_contains, cut_after=after_bytes)
            )

    def stall_next(
        self, method: str | None = None, path_contains: str | None = None, seconds: float = 30.0,
        times: int = 1, query_contains: str | None = None,
    ) -> None:
        """Hold the next matching requests ``seconds`` before handling them normally (the
        client waits mid-request; tests use it to act while an upload is in flight)."""
        with self._lock:
            self._faults.append(Fault("stall", method, path_contains, times, query_contains=query_contains, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget recorded requests, violations, part sizes and faults."""
        with self._lock:
            self.requests.clear()
            self.violations.clear()
            self.parts.clear()
            self._faults.clear()

    def _take_fault(self, method: str, path: str, query: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path, query):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- queries

    def find(self, method: str | None = None, path_contains: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path_contains is None or path_contains in r.path)
            ]

    def upload_parts(self) -> list[Recorded]:
        """Recorded UploadPart requests (in arrival order)."""
        with self._lock:
            return [r for r in self.requests if r.is_upload_part]

    # ---------------------------------------------------------------- rules

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def _violation(self, rec: Recorded, status: int, code: str, message: str) -> R2Violation:
        text = f"{rec.method} {rec.path}{'?' + rec.query if rec.query else ''}: {message}"
        with self._lock:
            self.violations.append(text)
        rec.rejected = message
        return R2Violation(status, code, message)

    def check_headers(self, rec: Recorded) -> None:
        h = rec.headers
        if "aws-chunked" in h.get("content-encoding", "").lower():
            raise self._violation(
                rec, 501, "NotImplemented", "Content-Encoding: aws-chunked is not supported"
            )
        sha = h.get("x-amz-content-sha256", "")
        if sha.upper().startswith("STREAMING-"):
            raise self._violation(
                rec, 501, "NotImplemented", f"x-amz-content-sha256: {sha} is not supported"
            )
        if "x-amz-trailer" in h:
            raise self._violation(
                rec, 501, "NotImplemented", f"x-amz-trailer: {h['x-amz-trailer']} is not supported"
            )
        for name in h if self.reject_checksum_headers else ():
            if name.startswith("x-amz-checksum-") or name == "x-amz-sdk-checksum-algorithm":
                raise self._violation(
                    rec, 400, "InvalidRequest", f"header {name} is not supported by R2"
                )

    def check_upload_part(self, rec: Recorded) -> None:
        try:
            number = int(rec.params["partNumber"][0])
        except (KeyError, ValueError):
            raise self._violation(rec, 400, "InvalidArgument", "bad partNumber") from None
        if not 1 <= number <= MAX_PARTS:
            raise self._violation(
                rec, 400, "InvalidArgument", f"partNumber {number} outside 1..{MAX_PARTS}"
            )
        if rec.body_length > MAX_PART_SIZE:
            raise self._violation(rec, 400, "EntityTooLarge", "part larger than 5 GiB")

    def note_part(self, rec: Recorded) -> None:
        upload_id = rec.params["uploadId"][0]
        number = int(rec.params["partNumber"][0])
        with self._lock:
            self.parts.setdefault(upload_id, {})[number] = rec.body_length

    def check_complete(self, rec: Recorded, body: bytes) -> None:
        upload_id = rec.params["uploadId"][0]
        numbers = [int(n) for n in re.findall(rb"<PartNumber>\s*(\d+)\s*</PartNumber>", body)]
        if not numbers:
            raise self._violation(rec, 400, "MalformedXML", "no parts listed")
        if len(numbers) > MAX_PARTS:
            raise self._violation(rec, 400, "InvalidArgument", f"more than {MAX_PARTS} parts")
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise self._violation(rec, 400, "InvalidPartOrder", f"parts not ascending: {numbers}")
        with self._lock:
            known = dict(self.parts.get(upload_id, {}))
        missing = [n for n in numbers if n not in known]
        if missing:
            raise self._violation(
                rec, 400, "InvalidPart", f"parts {missing} were not uploaded through the proxy"
            )
        sizes = [known[n] for n in numbers]
        non_final = sizes[:-1]
        if non_final:
            if len(set(non_final)) != 1:
                raise self._violation(
                    rec,
                    400,
                    "InvalidPart",
                    f"All non-trailing parts must have the same length; sizes {sizes}",
                )
            if non_final[0] < MIN_PART_SIZE:
                raise self._violation(
                    rec,
                    400,
                    "EntityTooSmall",
                    f"non-final part of {non_final[0]} bytes is smaller than 5 MiB; sizes {sizes}",
                )


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: R2Proxy
    protocol_version = "HTTP/1.1"
    server_version = "R2Proxy"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # All methods go through one handler.
    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    # -------------------------------------------------------------------------

    def _send_error_xml(self, status: int, code: str, message: str, resource: str) -> None:
        body = _xml_error(code, message, resource)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def _iter_body(self) -> Any:
        """Yield the request body in chunks (Content-Length or chunked)."""
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, _CHUNK))
                    if not data:
                        raise ConnectionError("client closed mid-body")
                    remaining -= len(data)
                    yield data
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(remaining, _CHUNK))
                if not data:
                    raise ConnectionError("client closed mid-body")
                remaining -= len(data)
                yield data

    def _drain(self, rec: Recorded) -> None:
        for data in self._iter_body():
            rec.body_length += len(data)

    def _handle(self) -> None:
        proxy = self.owner
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = Recorded(self.command, split.path, split.query, headers)
        proxy._record(rec)
        resource = split.path

        chunked_in = "chunked" in headers.get("transfer-encoding", "").lower()
        declared = int(headers.get("content-length") or 0) if not chunked_in else None

        fault = proxy._take_fault(rec.method, rec.path, rec.query)
        # "lost_reply" and "cut" act once the upstream has answered (in _forward).
        self._late_fault = fault if fault is not None and fault.kind in ("lost_reply", "cut") else None
        if fault is not None:
            rec.fault = f"status {fault.status}" if fault.kind == "status" else fault.kind
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and self._late_fault is None:
            if fault.kind == "reset":
                self._reset()
                return
            self._drain(rec)
            rec.status = fault.status
            self._send_error_xml(fault.status, fault.code, "injected by R2Proxy", resource)
            return

        try:
            proxy.check_headers(rec)
            if rec.is_upload_part:
                rec.body_length = declared or 0
                proxy.check_upload_part(rec)
        except R2Violation as exc:
            self._drain(rec)
            rec.status = exc.status
            self._send_error_xml(exc.status, exc.code, exc.message, resource)
            return

        # CompleteMultipartUpload bodies are small XML: buffer and validate first.
        body_prefetched: bytes | None = None
        if rec.is_complete_multipart or chunked_in:
            body_prefetched = b"".join(self._iter_body())
            rec.body_length = len(body_prefetched)
            if rec.is_complete_multipart:
                try:
                    proxy.check_complete(rec, body_prefetched)
                except R2Violation as exc:
                    rec.status = exc.status
                    self._send_error_xml(exc.status, exc.code, exc.message, resource)
                    return

        try:
            self._forward(rec, headers, body_prefetched)
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            rec.status = rec.status or 502
            rec.rejected = rec.rejected or f"upstream error: {exc!r}"
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_error_xml(502, "BadGateway", f"upstream error: {exc!r}", resource)

    def _forward(
        self, rec: Recorded, headers: dict[str, str], body_prefetched: bytes | None
    ) -> None:
        proxy = self.owner
        conn = http.client.HTTPConnection(proxy._up_host, proxy._up_port, timeout=300)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                    continue
                conn.putheader(name, value)
            if body_prefetched is not None:
                conn.putheader("Content-Length", str(len(body_prefetched)))
                conn.endheaders()
                if body_prefetched:
                    conn.send(body_prefetched)
            else:
                length = int(headers.get("content-length") or 0)
                if length or self.command in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(length))
                conn.endheaders()
                sent = 0
                for data in self._iter_body():
                    conn.send(data)
                    sent += len(data)
                rec.body_length = sent

            resp = conn.getresponse()
            rec.status = resp.status
            if rec.is_upload_part and 200 <= resp.status < 300:
                proxy.note_part(rec)
            late = getattr(self, "_late_fault", None)
            if late is not None and late.kind == "lost_reply":
                resp.read()
                self._reset()
                return

            body_needed = self.command != "HEAD" and resp.status not in (204, 304)
            resp_len = resp.getheader("Content-Length")
            buffered: bytes | None = None
            if body_needed and resp_len is None:
                buffered = resp.read()

            self.send_response(resp.status, resp.reason)
            for name, value in resp.getheaders():
                if name.lower() in _HOP_BY_HOP:
                    continue
                if buffered is not None and name.lower() == "content-length":
                    continue
                self.send_header(name, value)
            if buffered is not None:
                self.send_header("Content-Length", str(len(buffered)))
            elif not body_needed and resp_len is None and self.command != "HEAD":
                self.send_header("Content-Length", "0")
            self.end_headers()

            if buffered is not None:
                self.wfile.write(buffered)
            elif body_needed:
                sent_body = 0
                while True:
                    data = resp.read(_CHUNK)
                    if not data:
                        break
                    if late is not None and late.kind == "cut" and sent_body + len(data) > late.cut_after:
                        self.wfile.write(data[: late.cut_after - sent_body])
                        self._reset()
                        return
                    self.wfile.write(data)
                    sent_body += len(data)
            if resp.will_close:
                self.close_connection = True
        finally:
            conn.close()
