"""RPO of streaming mode: how much committed data a lost server takes with it.

    .venv/bin/python bench/pitr_rpo.py [--rounds 5] [--interval 1.0] [--store s3|local] [--survivor]

Each round, on a fresh PostgreSQL 15 cluster with ``wal = "stream"``:

1. ``posterity wal stream`` runs (pg_receivewal through its slot), a base backup is taken;
2. a writer commits one row every 50 ms (its id and the time the commit was acknowledged)
   for a random 4–12 s;
3. at a random moment the server is SIGKILLed and its data directory deleted — and, unless
   ``--survivor`` (the streamer on another host, which outlives the database server),
   the streamer is SIGKILLed at the same instant: the machine is gone, nothing is flushed on
   the way out;
4. ``posterity restore pitr latest --start`` into a new directory; the newest row found
   there is compared with the acknowledged ones.

RPO = kill time − acknowledgement time of the newest restored row (what a real outage
loses is the commits acknowledged after it). Reported per round, median and maximum.
The repository is the SeaweedFS S3 server on loopback (``--store s3``, as R2 in
production) or a local folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from wal_push_latency import python_for_postgres  # noqa: E402

from posterity.pgcluster import TempCluster, free_port  # noqa: E402
from posterity.pipeline import generate_identity  # noqa: E402

VENV = Path(sys.executable).parent


class Writer(threading.Thread):
    """Commits a row every ``every`` seconds; remembers when each commit was acknowledged."""

    def __init__(self, dsn: str, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.dsn, self.every = dsn, every
        self.acked: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    conn.execute("insert into rpo(id) values (%s)", (i,))
                    self.acked[i] = time.time()
                    time.sleep(self.every)
        except psycopg.Error:
            pass  # the server was killed under it


def one_round(r: int, work: Path, repo_toml: str, args: argparse.Namespace, recipient: str, key: Path) -> dict:
    rwork = work / f"round-{r}"
    rwork.mkdir()
    rwork.chmod(0o755)
    config = rwork / "posterity.toml"
    cluster = TempCluster(conf={"synchronous_commit": "on"})  # as in production: a commit returns once flushed
    cluster.start()
    cluster.psql("create table rpo(id int primary key)")
    config.write_text(
        f"{repo_toml.replace('ROUND', str(r))}\n"
        f'[encryption]\nrecipients = ["{recipient}"]\nidentity_file = "{key}"\n\n'
        f'[general]\nstate_dir = "{rwork / "state"}"\n\n'
        f'[sources.pitr]\nkind = "postgres-physical"\ndsn = "{cluster.dsn()}"\nwal = "stream"\n'
        f"stream_interval = {args.interval}\n")
    if os.geteuid() == 0:
        subprocess.run(["chown", "postgres", str(config), str(key)], check=True)
    posterity = [str(VENV / "posterity"), "-c", str(config)]
    subprocess.run([*posterity, "init"], check=True, capture_output=True)
    streamer = subprocess.Popen([*posterity, "wal", "stream"], stderr=subprocess.PIPE, text=True)
    dest = rwork / "restored"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the slot in use: streaming has started
            if cluster.psql("select count(*) from pg_replication_slots where active").strip() == "1":
                break
            time.sleep(0.1)
        subprocess.run([*posterity, "backup", "pitr"], check=True, capture_output=True)
        writer = Writer(cluster.dsn())
        writer.start()
        time.sleep(random.uniform(4, 12))
        if not args.survivor:
            streamer.kill()
        killed = time.time()
        cluster.kill()
        writer.stop.set()
        writer.join(5)
        shutil.rmtree(cluster.data_dir)
        if args.survivor:
            time.sleep(max(3.0, 3 * args.interval))  # the streamer stores what it had, then is stopped
            streamer.send_signal(signal.SIGTERM)
        streamer.wait(60)
        port = free_port()
        env = {**os.environ, "POSTERITY_EXECUTABLE": f"{python_for_postgres()} -m posterity"}
        t0 = time.monotonic()
        proc = subprocess.run([*posterity, "--json", "restore", "pitr", "latest", "--to-directory", str(dest),
                               "--start", "--port", str(port)], capture_output=True, text=True, env=env, check=False)
        restore_s = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"round {r}: restore failed: {proc.stderr}")
        tail = json.loads(proc.stdout).get("wal_tail")
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            row = conn.execute("select coalesce(max(id), 0), count(*) from rpo").fetchone()
        assert row is not None
        newest, count = row
        acked = writer.acked
        last_acked = max(acked) if acked else 0
        if count != newest:
            raise SystemExit(f"round {r}: rows 1..{newest} restored with holes ({count} rows)")
        rpo = killed - acked[newest] if newest else killed - min(acked.values())
        return {"round": r, "acked": last_acked, "restored": newest, "lost_rows": last_acked - newest,
                "rpo_s": round(rpo, 3), "restore_s": round(restore_s, 1), "tail": tail}
    finally:
        if streamer.poll() is None:
            streamer.kill()
        pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl"
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if (dest / "postmaster.pid").exists():
            subprocess.run([*prefix, pg_ctl, "-D", str(dest), "stop", "-m", "immediate"], capture_output=True,
                           check=False)
        cluster.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--store", choices=("s3", "local"), default="s3")
    ap.add_argument("--survivor", action="store_true", help="the streamer outlives the server (another host)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="posterity-rpo-"))
    work.chmod(0o755)
    server = None
    try:
        key = work / "key.txt"
        recipient = generate_identity(key)
        if args.store == "s3":
            from tests.support.seaweed import SeaweedS3

            server = SeaweedS3(work / "weed")
            server.start()
            server.create_bucket("rpo")
            repo_toml = (f'[repository]\nurl = "s3://rpo/ROUND"\nendpoint = "{server.endpoint}"\n'
                         f'region = "{server.region}"\naccess_key_id = "{server.access_key}"\n'
                         f'secret_access_key = "{server.secret_key}"\n')
        else:
            repo_toml = f'[repository]\nurl = "file://{work}/repo-ROUND"\n'
        results = [one_round(r, work, repo_toml, args, recipient, key) for r in range(args.rounds)]
        for res in results:
            print(res)
        rpos = [r["rpo_s"] for r in results]
        print(f"store {args.store}, stream_interval {args.interval}s, "
              f"{'streamer survives' if args.survivor else 'server and streamer killed together'}: "
              f"RPO median {statistics.median(rpos):.2f}s, max {max(rpos):.2f}s over {len(rpos)} rounds; "
              f"rows lost median {statistics.median(r['lost_rows'] for r in results)}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
