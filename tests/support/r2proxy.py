"""An HTTP proxy that enforces Cloudflare R2's S3 rules in front of SeaweedFS.

Each rule cites the R2 page it copies (pages under https://developers.cloudflare.com/r2/):

* ``LIMITS`` = platform/limits/: a part (like a single PUT) is at most "5 MiB less than
  5 GiB, so 4.995 GiB"; at most 10,000 parts; at most one write per second to one key.
* ``ERRORS`` = api/error-codes/: 411 ``MissingContentLength``; 400 ``EntityTooLarge``;
  400 ``EntityTooSmall`` (a non-final part under 5 MiB); 400 ``InvalidPart`` (10048: "All
  non-trailing parts must have the same size"); 429 ``TooManyRequests`` (10058: "limit:
  1 write/second per key").
* ``MULTIPART`` = objects/multipart-objects/: parts are equal in size except the last, which
  may be smaller (so a last part larger than the others is refused as ``InvalidPart``).
* ``S3API`` = api/s3/api/: the "Checksum Types" table (CRC64NVME, CRC32, CRC32C, SHA1,
  SHA256) — object uploads may carry those ``x-amz-checksum-*`` headers; operations whose
  row lists no checksum feature (DeleteObjects, bucket operations) refuse them (as modelled
  here: 400 ``InvalidRequest``); ``x-amz-request-payer`` is listed as not implemented on
  every object operation (modelled: 501 ``NotImplemented``); aws-chunked / ``STREAMING-*``
  payloads and ``x-amz-trailer`` are refused (501), as seen from R2 by WAL-G and rclone.

The proxy records every request, forwards allowed ones unchanged (including the
``Host`` header, so SigV4 signatures remain valid) and streams bodies.  Fault hooks
let reliability tests inject 5xx responses, connection resets, stalls (``stall_next``),
and servers that never answer (``hang_next``).
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
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024  # LIMITS: 4.995 GiB
MAX_PARTS = 10_000  # LIMITS
WRITE_INTERVAL = 1.0  # LIMITS: one write per second per key
CHECKSUM_ALGORITHMS = {"crc64nvme", "crc32", "crc32c", "sha1", "sha256"}  # S3API: Checksum Types
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
    kind: str  # "status" | "reset" | "lost_reply" | "cut" | "stall" | "hang"
    method: str | None
    path_contains: str | None
    times: int
    status: int = 503
    code: str = "ServiceUnavailable"
    query_contains: str | None = None
    cut_after: int = 0  # "cut": response bytes sent before the drop; "hang": request bytes read
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

    def __init__(
        self,
        upstream: str,
        *,
        reject_checksum_headers: bool = True,
        max_parts: int = MAX_PARTS,
        write_interval: float = WRITE_INTERVAL,
    ) -> None:
        """``reject_checksum_headers=False`` lets ``x-amz-checksum-*`` headers through on
        every request (R2 accepts them on object uploads either way; streaming/trailer
        payloads are still rejected). ``max_parts`` lowers the part-count limit (tests prove
        part sizing without 80 GiB of data); ``write_interval`` is the one-write-per-second
        rule per key (0 turns it off)."""
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream
        self.reject_checksum_headers = reject_checksum_headers
        self.max_parts = max_parts
        self.write_interval = write_interval
        self._last_write: dict[str, float] = {}
        self._up_host = parts.hostname
        self._up_port = parts.port or 80
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.throttled: list[str] = []  # writes answered 429 by the one-write-per-second rule
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
            # A short poll interval: ``stop`` (shutdown) waits up to one interval, and the
            # default 0.5 s was half a second of teardown for every test using the proxy.
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"r2proxy-{self.port}", daemon=True
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

    def hang_next(
        self, method: str | None = None, path_contains: str | None = None, seconds: float = 60.0,
        times: int = 1, after_bytes: int = 0, query_contains: str | None = None,
    ) -> None:
        """A server that stops: read ``after_bytes`` of the next matching requests' bodies
        (0: none — it accepts and never answers; more: it stalls mid-upload), then neither
        read nor answer for ``seconds``, then drop the connection."""
        with self._lock:
            self._faults.append(Fault("hang", method, path_contains, times, query_contains=query_contains,
                                      seconds=seconds, cut_after=after_bytes))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget recorded requests, violations, part sizes and faults."""
        with self._lock:
            self.requests.clear()
            self.violations.clear()
            self.throttled.clear()
            self.parts.clear()
            self._faults.clear()
            self._last_write.clear()

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
        if "x-amz-request-payer" in h:  # S3API: "Request Payer" is not implemented
            raise self._violation(
                rec, 501, "NotImplemented", "header x-amz-request-payer is not implemented by R2"
            )
        if rec.method in ("PUT", "POST") and "content-length" not in h:  # ERRORS: 10033
            raise self._violation(
                rec, 411, "MissingContentLength", "Content-Length header required but missing"
            )
        # S3API: checksums on object uploads (PutObject, UploadPart, multipart create/complete).
        upload = (rec.method == "PUT" and "x-amz-copy-source" not in h) or rec.is_create_multipart or (
            rec.is_complete_multipart
        )
        for name in h:
            if not (name.startswith("x-amz-checksum-") or name == "x-amz-sdk-checksum-algorithm"):
                continue
            algo = h[name].lower() if name in ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm") else (
                name.removeprefix("x-amz-checksum-")
            )
            allowed = upload and (algo in CHECKSUM_ALGORITHMS or name == "x-amz-checksum-type")
            if self.reject_checksum_headers and not allowed:
                raise self._violation(
                    rec, 400, "InvalidRequest", f"header {name} is not supported by R2 here"
                )

    def _object_write(self, rec: Recorded) -> bool:
        """PutObject, DeleteObject or CompleteMultipartUpload: a write to the key (LIMITS)."""
        if rec.is_complete_multipart:
            return True
        key = rec.path.strip("/").partition("/")[2]
        if not key:
            return False
        return (rec.method == "PUT" and not rec.is_upload_part) or (rec.method == "DELETE" and not rec.params)

    def check_write_rate(self, rec: Recorded) -> None:
        """ERRORS 10058 / LIMITS: at most one write per second to one key, else 429."""
        if self.write_interval <= 0 or not self._object_write(rec):
            return
        now = time.monotonic()
        with self._lock:
            last = self._last_write.get(rec.path)
            if last is not None and now - last < self.write_interval:
                busy = True
            else:
                busy = False
                self._last_write[rec.path] = now
        if busy:
            # A throttle, not a broken rule: recorded apart from ``violations`` (clients retry it).
            message = "more than one write per second to this key"
            rec.rejected = message
            with self._lock:
                self.throttled.append(f"{rec.method} {rec.path}")
            raise R2Violation(429, "TooManyRequests", message)

    def check_upload_part(self, rec: Recorded) -> None:
        try:
            number = int(rec.params["partNumber"][0])
        except (KeyError, ValueError):
            raise self._violation(rec, 400, "InvalidArgument", "bad partNumber") from None
        if not 1 <= number <= self.max_parts:
            raise self._violation(
                rec, 400, "InvalidArgument", f"partNumber {number} outside 1..{self.max_parts}"
            )
        if rec.body_length > MAX_PART_SIZE:  # LIMITS / ERRORS: EntityTooLarge
            raise self._violation(rec, 400, "EntityTooLarge", "part larger than 4.995 GiB")

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
        if len(numbers) > self.max_parts:
            raise self._violation(rec, 400, "InvalidArgument", f"more than {self.max_parts} parts")
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
            if sizes[-1] > non_final[0]:  # MULTIPART: the last part may only be smaller
                raise self._violation(
                    rec,
                    400,
                    "InvalidPart",
                    f"the last part is larger than the others; sizes {sizes}",
                )
            if non_final[0] < MIN_PART_SIZE:  # ERRORS: EntityTooSmall
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
        if fault is not None and fault.kind == "hang":
            wanted = fault.cut_after
            while wanted > 0:
                data = self.rfile.read(min(wanted, _CHUNK))
                if not data:
                    break
                wanted -= len(data)
                rec.body_length += len(data)
            time.sleep(fault.seconds)
            self._reset()
            return
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
            proxy.check_write_rate(rec)
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
