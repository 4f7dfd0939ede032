"""The README's first command: `posterity demo` backs up and restores a throwaway database."""

from __future__ import annotations

import subprocess
import sys


def test_demo_restores_an_identical_database():
    proc = subprocess.run([sys.executable, "-m", "posterity", "demo", "--posters", "100"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: restored database is identical to the original" in proc.stdout
    assert "public.posters                                100 rows" in proc.stdout
