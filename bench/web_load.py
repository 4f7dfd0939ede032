"""Benchmark: dashboard page loads on a repository with 1,000 backups.

Run:  .venv/bin/python bench/web_load.py --backups 1000 --rounds 5 [--screenshot docs/]

The repository is SeaweedFS S3 on loopback, built like the dashboard tests' one
(tests/support/webrepo.py: two real pg_dump backups, a restore point, a failed backup,
a drill, a verify run), then grown to N backups of "db" by committing copies of the newest
real manifest under new ids an hour apart (the catalog, which is what a page reads, is
then exactly what N real backups would leave; their payloads are shared).

Measured against a real uvicorn socket with httpx, full response read, median of rounds,
each on a new server:
  cold      the first view after `posterity web` starts on a host with no local manifest
            cache (every manifest is a GET; the start-up warm-up is left out);
  uncached  the local manifest cache is on disk, the dashboard cache is off: the cost of a
            view whenever nothing usable is cached (after start-up, or 5 min past expiry);
  hot       a repeat view within cache_seconds (or within 5 minutes after, while the cache
            refreshes in the background).
With --screenshot DIR it also saves dashboard-overview.png and dashboard-source.png
(Chromium, 1280x900) into DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.support.ops import make_context  # noqa: E402
from tests.support.seaweed import SeaweedS3  # noqa: E402
from tests.support.webrepo import WEB_TOKEN, build_web_repo  # noqa: E402

from posterity.operations.context import Context  # noqa: E402
from posterity.repository import Manifest, layout  # noqa: E402
from posterity.web import WebServer  # noqa: E402

PAGES = ["/", "/sources/db", "/drills", "/verify", "/points", "/audit", "/api/status"]


def grow(ctx: Context, n: int) -> None:
    """Commit copies of the newest real manifest until "db" has ``n`` backups, an hour apart."""
    have = ctx.repo.manifests("db")
    base = json.loads(have[-1].to_json())
    start = datetime.now(UTC) - timedelta(hours=n + 2)
    for i in range(n - len(have)):
        t = start + timedelta(hours=i)
        # Sizes grow slowly with some jitter; every 250th is a truncated-looking dump.
        factor = (0.7 + 0.3 * i / n + (i * 37 % 11) / 200) * (0.3 if i % 250 == 249 else 1.0)
        d = dict(base, id=layout.new_backup_id(t), started_at=t.isoformat(),
                 finished_at=(t + timedelta(seconds=3 + (i * 7 % 5) * 0.4)).isoformat(), tags=["hourly"])
        d["artifacts"] = [dict(a, size=int(a["size"] * factor)) for a in base["artifacts"]]
        ctx.repo.commit(Manifest.from_json(json.dumps(d).encode(), ""))


def timed(client: httpx.Client, url: str) -> float:
    t0 = time.perf_counter()
    r = client.get(url)
    r.read()
    assert r.status_code == 200, (url, r.status_code)
    return time.perf_counter() - t0


def view(ctx: Context, page: str, headers: dict[str, str], *, cache_seconds: float, repeat: bool = False) -> float:
    """Seconds for one full GET of ``page`` on a new server (the second GET with ``repeat``)."""
    server = WebServer(ctx, "127.0.0.1:0", WEB_TOKEN, cache_seconds=cache_seconds)
    if not repeat:
        server.dashboard.warm = lambda: None  # type: ignore[method-assign]  # measure the view alone
    server.start()
    try:
        with httpx.Client(base_url=server.url.rstrip("/"), headers=headers, timeout=120) as c:
            while True:
                try:
                    c.get("/login")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            if repeat:
                if server.warm_thread is not None:
                    server.warm_thread.join()  # so it does not run on into the next measurement
                timed(c, page)
            return timed(c, page)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backups", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pages", default=",".join(PAGES), help="comma-separated pages to time")
    ap.add_argument("--screenshot", type=Path, help="folder to save dashboard screenshots into")
    args = ap.parse_args()
    from posterity.pgcluster import TempCluster

    work = Path(tempfile.mkdtemp(prefix="posterity-bench-web-"))
    s3 = SeaweedS3(work / "s3")
    s3.start()
    try:
        with TempCluster() as pg:
            repo, _ = build_web_repo(work / "env", pg, s3, posters=200)
            t0 = time.monotonic()
            grow(repo.ctx, args.backups)
            print(f"grew to {len(repo.ctx.repo.manifests('db'))} backups of db in {time.monotonic() - t0:.1f}s")
            headers = {"Authorization": f"Bearer {WEB_TOKEN}"}
            kinds = ("cold", "uncached", "hot")
            pages = args.pages.split(",")
            results: dict[str, dict[str, list[float]]] = {p: {k: [] for k in kinds} for p in pages}
            for rnd in range(args.rounds):
                for page in pages:
                    state = work / f"state-{rnd}-{page.strip('/').replace('/', '_') or 'root'}"
                    ctx = make_context(repo.config_text.replace(str(work / "env" / "state"), str(state)))
                    # cold: `posterity web` just started on a host with no local manifest cache
                    results[page]["cold"].append(view(ctx, page, headers, cache_seconds=30))
                    # uncached: the manifest cache is on disk now, the dashboard cache is off
                    results[page]["uncached"].append(view(ctx, page, headers, cache_seconds=0))
                    # hot: any view within cache_seconds (or up to 5 min after, while it refreshes)
                    results[page]["hot"].append(view(ctx, page, headers, cache_seconds=30, repeat=True))
            print(f"\n{args.backups} backups, {args.rounds} rounds, median seconds (max):")
            print(f"{'page':<14}" + "".join(f"{k:>16}" for k in kinds))
            for page, r in results.items():
                cells = [f"{statistics.median(r[k]):.3f} ({max(r[k]):.3f})" for k in kinds]
                print(f"{page:<14}" + "".join(f"{c:>16}" for c in cells))
            if args.screenshot:
                shoot(repo, args.screenshot)
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)


def shoot(repo, folder: Path) -> None:
    from tests.support.browser import chrome

    server = WebServer(repo.ctx, "127.0.0.1:0", None, cache_seconds=600)
    server.start()
    driver = chrome(width=1280, height=900)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in (("overview", "/"), ("source", "/sources/db")):
            driver.get(server.url.rstrip("/") + path)
            time.sleep(0.5)
            driver.save_screenshot(str(folder / f"dashboard-{name}.png"))
            print(f"saved {folder / f'dashboard-{name}.png'}")
    finally:
        driver.quit()
        server.stop()


if __name__ == "__main__":
    main()
