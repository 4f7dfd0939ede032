"""Run operations on time, never twice at once, and report what happened.

- ``cron``: cron expressions and next-run computation (in a time zone), and clocks — the
  real one and a controllable one for tests.
- ``daemon``: the long-running ``posterity daemon``: jobs, catch-up, no overlap, retries,
  prune after jobs, clean SIGTERM.
- ``notify``: apprise notifications (failure, recovery, staleness, size anomaly) and
  healthchecks-style pings.
- ``metrics``: Prometheus metrics and ``/healthz``.
- ``systemd``: unit and timer files for those who prefer timers to a daemon.
"""
