"""What each page shows: the values a template renders, built from ``Dashboard`` reads.

Each ``*_page`` returns the template's values; each ``*_api`` the JSON its ``/api/…``
route answers. Only arrangement happens here (sorting, joining a source's backups with
its failures for the chart); every fact comes from an operation through ``Dashboard``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from .data import Dashboard

AUDIT_OUTCOMES = ("succeeded", "failed")


class NotFound(Exception):
    pass


def _ts(iso: str | None) -> float | None:
    if not iso:
        return None
    t = datetime.fromisoformat(iso)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _seconds(b: dict[str, Any]) -> float | None:
    start, end = _ts(b.get("started_at")), _ts(b.get("finished_at"))
    return None if start is None or end is None else round(end - start, 3)


def overview_page(board: Dashboard, request: Request) -> dict[str, Any]:
    ov = board.overview()
    rows = []
    for s in ov["status"]["sources"]:
        last = s["last_success"]
        rows.append({"s": s, "took": board.backup_seconds(s["source"], last["id"]) if last else None,
                     "next": ov["next_runs"].get(s["source"]), "wal": ov["wal"].get(s["source"])})
    return {"ov": ov, "rows": rows, "cache_seconds": board.cache.ttl}


def _known_source(board: Dashboard, name: str) -> None:
    known = {s["source"] for s in board.status()["sources"]}
    if name not in known:
        raise NotFound(f"No source named {name!r} (known: {', '.join(sorted(known)) or 'none'}).")


def source_page(board: Dashboard, request: Request) -> dict[str, Any]:
    from ..operations.status import size_anomaly

    name = request.path_params["name"]
    configured = name in board.ctx.config.sources
    # Each of these lists the store on a cache miss: overlap them instead of waiting in turn.
    with ThreadPoolExecutor(max_workers=4) as pool:
        status_f = pool.submit(board.status)
        backups_f = pool.submit(board.backups, name)
        failures_f = pool.submit(board.audit, op="backup", source=name, result="failed")
        retention_f = pool.submit(board.retention, name) if configured else None
        status_report, backups, failures = status_f.result(), backups_f.result(), failures_f.result()
        retention = retention_f.result() if retention_f is not None else None
    _known_source(board, name)
    status = next(s for s in status_report["sources"] if s["source"] == name)
    notify = board.ctx.config.notify
    verdicts = {v["id"]: v for v in (retention or {}).get("backups", []) if v.get("source") == name}
    rows, sizes, points = [], [], []
    for b in backups:
        sizes.append(b["size"])
        anomaly = size_anomaly(sizes, notify.size_anomaly_ratio, notify.size_anomaly_window) is not None
        took = _seconds(b)
        rows.append({"b": b, "took": took, "anomaly": anomaly, "verdict": verdicts.get(b["id"])})
        points.append({"t": _ts(b["finished_at"]), "size": b["size"], "seconds": took, "anomaly": anomaly})
    for f in failures:
        points.append({"t": _ts(f.get("time")), "failed": True, "error": f.get("error")})
    points.sort(key=lambda p: p["t"] or 0)
    return {"name": name, "status": status, "rows": list(reversed(rows)), "chart": points,
            "failures": list(reversed(failures)), "retention": retention}


def backups_api(board: Dashboard, request: Request) -> list[dict[str, Any]]:
    name = request.path_params["name"]
    _known_source(board, name)
    return board.backups(name)


def retention_api(board: Dashboard, request: Request) -> dict[str, Any]:
    name = request.path_params["name"]
    _known_source(board, name)
    if name not in board.ctx.config.sources:
        raise NotFound(f"Source {name!r} is no longer configured, so no retention policy applies to it.")
    return board.retention(name)


def drills_page(board: Dashboard, request: Request) -> dict[str, Any]:
    source = request.query_params.get("source") or None
    reports = board.drills(source)
    chart = [{"t": _ts(r.get("finished_at") or r.get("started_at")), "source": r.get("source"),
              "rto": r.get("restore_seconds"), "ok": bool(r.get("ok"))} for r in reports]
    return {"reports": list(reversed(reports)), "chart": chart, "source": source,
            "sources": sorted({r.get("source") for r in reports if r.get("source")})}


def verify_page(board: Dashboard, request: Request) -> dict[str, Any]:
    return {"runs": list(reversed(board.verifications()))}


def points_page(board: Dashboard, request: Request) -> dict[str, Any]:
    return {"points": list(reversed(board.points()))}


def _audit_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    result = q.get("result") or None
    if result is not None and result not in AUDIT_OUTCOMES:
        result = None
    since = None
    if q.get("since"):
        from ..config.durations import parse_duration

        try:
            since = datetime.now(UTC) - parse_duration(q["since"])
        except ValueError:
            since = None
    return {"op": q.get("op") or None, "source": q.get("source") or None, "result": result, "since": since}


def audit_api(board: Dashboard, request: Request) -> list[dict[str, Any]]:
    return board.audit(**_audit_filters(request))


def audit_page(board: Dashboard, request: Request) -> dict[str, Any]:
    f = _audit_filters(request)
    records = board.audit(**f)
    skip = {"time", "host", "user", "operation", "result", "key", "repository"}
    rows = [{"r": r, "details": ", ".join(f"{k}={v}" for k, v in r.items()
                                          if k not in skip and v not in (None, [], {}, ""))}
            for r in reversed(records)]
    ops = ["backup", "restore", "restore-point", "drill", "verify", "prune", "init"]
    return {"rows": rows, "filters": f, "since": request.query_params.get("since", ""), "ops": ops,
            "sources": sorted(board.ctx.config.sources), "outcomes": AUDIT_OUTCOMES}
