"""The one adapter to PostgreSQL on this host: its programs, its OS user, its servers.

- ``binaries``: where ``initdb``/``pg_ctl``/``psql``/``pg_dump``… are (``$POSTERITY_PG_BINDIR``,
  ``bin_dir``, ``/usr/lib/postgresql/<major>/bin``, ``pg_config``, ``$PATH``);
- ``owner``: the OS user a cluster runs as (``postgres`` when we are root; the data
  directory's owner), a clean environment for it (no stray ``PG*`` settings), and
  :func:`owner.run_as` — every program run as that user goes through it;
- ``server``: ``pg_ctl`` start/stop, waiting until a server accepts connections, whether a
  postmaster lives, and SQL through ``psql`` as the owner (over TCP or the Unix socket).

Errors are converted here, at the edge: a missing program is ``ToolMissing``, a program
that does not answer within its bound is ``SourceTimeout`` (never a raw
``subprocess.TimeoutExpired``). SQL over a DSN (psycopg) is ``sources/postgres/tools.py``,
which converts psycopg's errors the same way.

Used by ``pgcluster.TempCluster`` (tests, demo, drills), ``restore pitr --start``
(``sources/postgres/pitr_start.py``), the PITR drill, ``pitr_restore`` and ``doctor``.
"""

from .binaries import find_binary, find_server_bin_dir
from .owner import as_owner, owner_env, owner_of, run_as, server_owner
from .server import pg_ctl, postmaster_alive, psql, stop, wait_ready

__all__ = ["as_owner", "find_binary", "find_server_bin_dir", "owner_env", "owner_of", "pg_ctl", "postmaster_alive",
           "psql", "run_as", "server_owner", "stop", "wait_ready"]
