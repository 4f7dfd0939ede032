"""``posterity demo``: the main job end to end on embedded defaults.

Starts a throwaway PostgreSQL cluster with the Posters.science sample data, creates a
local folder repository and a fresh age key, then runs the real command line: init,
backup, list, restore into a new database, and compares every table (row counts and an
ordered checksum of contents) with the original. Prints a short summary.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .fingerprints import fingerprint
from .meili import SKIPPED, MeiliDemo
from .sample_data import load_sample


def _run(args: list[str], cwd: Path, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "posterity", *args]
    print(f"$ posterity {' '.join(args)}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, text=True, capture_output=capture, check=False)
    if proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stderr)
        raise SystemExit(
            f"demo: `posterity {' '.join(args)}` failed with exit code {proc.returncode}"
        )
    if capture:
        return proc.stdout
    return ""


def run_demo(posters: int = 2000, keep: bool = False, web: str | None = None) -> int:
    """The demo; with ``web`` (HOST:PORT) it also drills the backup and then serves the
    dashboard over the demo repository until Ctrl-C (the folder is then kept)."""
    from ..pgcluster import TempCluster

    work = Path(tempfile.mkdtemp(prefix="posterity-demo-"))
    t0 = time.monotonic()
    print(f"demo: working in {work}")
    with TempCluster() as cluster:
        print(
            f"demo: throwaway PostgreSQL on 127.0.0.1:{cluster.port}; loading {posters} sample posters"
        )
        cluster.psql("create database posters_science")
        source_dsn = cluster.dsn("posters_science")
        load_sample(source_dsn, posters=posters)
        meili = MeiliDemo.from_env()  # only with MEILISEARCH_URL; says so plainly otherwise
        if meili:
            meili.load(min(posters, 500))
        recipient = _run(
            ["key", "generate", "--out", str(work / "key.txt")], work, capture=True
        ).strip()
        (work / "posterity.toml").write_text(
            "[repository]\n"
            f'url = "file://{work / "repo"}"\n\n'
            "[encryption]\n"
            f'recipients = ["{recipient}"]\n'
            f'identity_file = "{work / "key.txt"}"\n\n'
            "[general]\n"
            f'state_dir = "{work / "state"}"\n\n'
            "[sources.db]\n"
            'kind = "postgres"\n'
            f'dsn = "{source_dsn}"\n'
            + ('drill = "scratch-db"\n' if web else "")
            + (meili.config_section() if meili else "")
        )
        _run(["init"], work)
        _run(["backup", "db"], work)
        _run(["list"], work)
        _run(
            ["restore", "db", "latest", "--to-database", "posters_restored", "--check-counts"], work
        )
        meili_result = meili.run(_run, work) if meili else None
        before = fingerprint(source_dsn)
        after = fingerprint(cluster.dsn("posters_restored"))
        same = before == after
        print()
        print("demo summary")
        print(f"  tables and sequences compared: {len(before)}")
        for name, (count, digest) in sorted(before.items()):
            ok = "ok" if after.get(name) == (count, digest) else "DIFFERENT"
            unit = "last value" if name.startswith("sequence:") else "rows" if "." in name else "objects"
            print(f"    {name:<40} {count:>8} {unit:<10} {digest[:12]:<12}  {ok}")
        print(
            f"  result: {'restored database is identical to the original' if same else 'MISMATCH'}"
        )
        for line in meili_result.lines if meili_result else [SKIPPED]:
            print(line)
        same = same and (meili_result is None or meili_result.same)
        print(f"  repository: {work / 'repo'} (key: {work / 'key.txt'})")
        print(f"  took {time.monotonic() - t0:.1f}s")
        if web:
            _run(["drill", "--source", "db"], work)
            print(f"demo: the dashboard is at http://{web}/ (Ctrl-C stops it and the demo)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the dashboard, then the demo
                subprocess.run([sys.executable, "-m", "posterity", "web", "--listen", web], cwd=work, check=False)
            keep = True
        elif keep:
            print(f"  dashboard: cd {work} && posterity web   (then open http://127.0.0.1:9851/)")
        else:
            print("  dashboard: run `posterity demo --web` to see this repository in a browser")
    if keep:
        print(f"demo: kept {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(run_demo(int(os.environ.get("POSTERITY_DEMO_POSTERS", "2000"))))
