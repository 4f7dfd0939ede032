"""Meilisearch over HTTP: requests, task waiting, and errors mapped at this edge.

Every failure leaves here as a Posterity error, never as an ``httpx`` exception:

    SourceUnreachable       connection refused, DNS, TLS, a request that timed out
    SourceAuthError         401 (no key) and 403 (key refused or lacking the action)
    MeiliApiError           any other refusal, with Meilisearch's ``code`` and message
    TaskFailed              a task that ended ``failed`` or ``canceled`` (names the task uid)
    TaskTimeout             a task still enqueued/processing after ``task_timeout`` seconds

``TaskFailed``/``TaskTimeout`` are ``DumpFailed`` (exit 5): nothing is committed. Restores
convert them into ``RestoreFailed`` after cleaning up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ... import __version__
from ...errors import DumpFailed, SourceAuthError, SourceError, SourceUnreachable
from .compat import ServerInfo, parse_version

FINISHED = ("succeeded", "failed", "canceled")
AUTH_HINT = (
    "Check api_key in posterity.toml (e.g. api_key = \"${MEILI_MASTER_KEY}\" with the variable set). "
    "Backups need the master key or an admin key (snapshots.create, dumps.create, indexes/settings/"
    "documents/stats/tasks get); restores also need indexes.create/swap/delete and documents.add."
)


class MeiliApiError(SourceError):
    """Meilisearch refused a request."""

    default_hint = "The message above is Meilisearch's own; see https://www.meilisearch.com/docs/reference/errors/error_codes."

    def __init__(self, message: str, *, status: int = 0, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class TaskFailed(DumpFailed):
    """A Meilisearch task failed."""

    def __init__(self, message: str, *, task: dict[str, Any], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.task = task


class TaskTimeout(DumpFailed):
    """A Meilisearch task did not finish in time."""

    default_hint = (
        "The task keeps running on the server. Raise task_timeout in posterity.toml if the instance is "
        "large or busy, and look at GET /tasks/<uid> (and GET /tasks?statuses=enqueued,processing)."
    )

    def __init__(self, message: str, *, task: dict[str, Any], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.task = task


def describe(url: str) -> str:
    """The URL without credentials or query, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def task_label(task: dict[str, Any]) -> str:
    where = f" on index {task['indexUid']!r}" if task.get("indexUid") else ""
    return f"task {task.get('uid', task.get('taskUid'))} ({task.get('type')}{where})"


class MeiliClient:
    """One Meilisearch server. ``task_timeout`` bounds every wait for a task."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        task_timeout: float = 3600,
        request_timeout: float = 120,
    ) -> None:
        self.url = url.rstrip("/")
        self.where = describe(self.url)
        self.task_timeout = task_timeout
        headers = {"User-Agent": f"posterity/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(request_timeout, connect=10),
        )
        self._info: ServerInfo | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MeiliClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        what = f"{method} {path}"
        try:
            r = self.http.request(method, path, json=json, params=params, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise SourceUnreachable(
                f"Meilisearch at {self.where} did not answer {what} in time ({type(exc).__name__}).",
                hint="Check that the server is up and not overloaded; the operation can be retried.",
            ) from None
        except httpx.HTTPError as exc:
            raise SourceUnreachable(
                f"Cannot reach Meilisearch at {self.where} ({what}): {exc or type(exc).__name__}.",
                hint="Check that Meilisearch is running and that url in posterity.toml is right "
                "(curl URL/health should answer {\"status\":\"available\"}).",
            ) from None
        if r.status_code >= 400:
            raise self._error(r, what)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise MeiliApiError(
                f"Meilisearch at {self.where} answered {what} with something that is not JSON "
                f"(HTTP {r.status_code}).",
                status=r.status_code,
                hint="Check that url points at Meilisearch itself, not at a proxy's error page.",
            ) from None

    def _error(self, r: httpx.Response, what: str) -> SourceError:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("code") or "")
        message = str(body.get("message") or r.reason_phrase or "").strip()
        if r.status_code == 401:
            return SourceAuthError(
                f"Meilisearch at {self.where} wants an API key for {what} (401 {code or 'unauthorized'}).",
                hint=AUTH_HINT,
            )
        if r.status_code == 403:
            return SourceAuthError(
                f"Meilisearch at {self.where} refused the API key for {what} (403 {code or 'forbidden'}).",
                hint=AUTH_HINT,
            )
        return MeiliApiError(
            f"Meilisearch at {self.where} refused {what}: {code or r.status_code}: {message}",
            status=r.status_code,
            code=code,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    # -- tasks ---------------------------------------------------------------------
    def enqueue(self, method: str, path: str, **kwargs: Any) -> int:
        """Send a write and return its task uid."""
        summary = self.request(method, path, **kwargs)
        if not isinstance(summary, dict) or "taskUid" not in summary:
            raise MeiliApiError(f"Meilisearch answered {method} {path} without a taskUid: {summary!r}.")
        return int(summary["taskUid"])

    def wait_task(self, uid: int, timeout: float | None = None) -> dict[str, Any]:
        """Poll GET /tasks/{uid} until it finishes; raise unless it succeeded."""
        limit = self.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.02
        while True:
            task = self.request("GET", f"/tasks/{uid}")
            status = task.get("status")
            if status == "succeeded":
                return task
            if status in ("failed", "canceled"):
                err = task.get("error") or {}
                reason = f"{err.get('code')}: {err.get('message')}" if err else status
                raise TaskFailed(
                    f"Meilisearch {task_label(task)} {status}: {reason}",
                    task=task,
                    hint="Nothing was committed or swapped in; fix the cause shown (disk space, settings, "
                    "documents) and run the command again.",
                )
            if time.monotonic() >= deadline:
                raise TaskTimeout(
                    f"Meilisearch {task_label(task)} is still {status} after {limit:g} s (task_timeout).",
                    task=task,
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 1.0)

    def last_task_uid(self) -> int | None:
        page = self.get("/tasks", limit=1)
        results = page.get("results") or []
        return int(results[0]["uid"]) if results else None

    def pending_tasks(self, most: int = 100_000) -> int:
        """Enqueued and processing tasks. Before v1.3 ``GET /tasks`` has no ``total``: count
        them page by page (``from``/``next``), at most ``most``."""
        page = self.get("/tasks", statuses="enqueued,processing", limit=1)
        if "total" in page:
            return int(page.get("total") or 0)
        count, start = 0, None
        while count < most:
            params: dict[str, Any] = {"statuses": "enqueued,processing", "limit": 1000}
            if start is not None:
                params["from"] = start
            page = self.get("/tasks", **params)
            count += len(page.get("results") or [])
            start = page.get("next")
            if start is None:
                break
        return count

    # -- instance ------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def version(self) -> str:
        return str(self.get("/version").get("pkgVersion"))

    def info(self) -> ServerInfo:
        """The server's version and experimental features, read once per client."""
        if self._info is None:
            version = parse_version(self.version())
            try:
                features: dict[str, Any] | None = self.get("/experimental-features")
            except (MeiliApiError, SourceAuthError):
                features = None  # before v1.3 (no route), or a key without experimental.get
            self._info = ServerInfo(version, features)
        return self._info

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.get(path, offset=offset, limit=100)
            results = page.get("results") or []
            yield from results
            offset += len(results)
            if not results or offset >= int(page.get("total") or 0):
                return

    def indexes(self) -> list[dict[str, Any]]:
        return list(self._pages("/indexes"))

    def index(self, uid: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/indexes/{uid}")
        except MeiliApiError as exc:
            if exc.code == "index_not_found":
                return None
            raise

    def keys(self) -> list[dict[str, Any]]:
        return list(self._pages("/keys"))

    def documents(self, uid: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Every document of index ``uid`` with its ``_vectors``, one page at a time.

        ``retrieveVectors`` is sent only where the server knows it and has vectors enabled
        (see compat.py); elsewhere ``_vectors`` is an ordinary field, returned as stored."""
        vectors = self.info().vectors_retrievable
        extra: dict[str, Any] = {"retrieveVectors": True} if vectors else {}
        offset = 0
        fetch = True
        while True:
            if fetch:
                try:
                    page = self.request(
                        "POST",
                        f"/indexes/{uid}/documents/fetch",
                        json={"offset": offset, "limit": page_size, **extra},
                    )
                except MeiliApiError as exc:
                    if vectors and exc.status == 400 and (
                        exc.code == "feature_not_enabled" or "retrieveVectors" in exc.message
                    ):
                        # The features could not be read beforehand: 1.9–1.12 without the vector
                        # store refuse the field and return `_vectors` as stored without it.
                        vectors, extra = False, {}
                        continue
                    # Before v1.2 there is no /documents/fetch: page with GET instead.
                    if exc.status not in (404, 405) or exc.code == "index_not_found":
                        raise
                    fetch = False
                    continue
            else:
                page = self.get(
                    f"/indexes/{uid}/documents", offset=offset, limit=page_size,
                    **({"retrieveVectors": "true"} if vectors else {}),
                )
            results = page.get("results") or []
            if results:
                yield results
            offset += len(results)
            if len(results) < page_size:
                return
