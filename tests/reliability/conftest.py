"""Fixtures of the reliability suite (helpers live in ``harness.py``)."""

from tests.reliability.harness import golden, local_setup, module_db, proxy_setup, s3_setup  # noqa: F401
