"""archive_command's lean entry stays lean: it shares the loader's rules (``config.plain``)
without importing pydantic or the CLI, which cost ~0.4 s per WAL segment."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
from pathlib import Path
from posterity.cli.walfast import LeanContext
lean = LeanContext(Path(sys.argv[1]))
archive = lean.archive(lean.source(None))
print(json.dumps({"heavy": sorted(m for m in ("pydantic", "click", "rich", "posterity.config.load",
                                              "posterity.operations.context") if m in sys.modules),
                  "source": archive.source, "threads": lean.stages.zstd_threads,
                  "level": lean.stages.zstd_level}))
"""


def test_the_lean_entry_reads_the_config_without_the_schema(tmp_path):
    cfg = tmp_path / "posterity.toml"
    cfg.write_text(
        f'[repository]\nurl = "file://{tmp_path}/repo"\n[encryption]\n'
        'recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]\n'
        "zstd_level = 5\nzstd_threads = 2\n"
        '[sources.pitr]\nkind = "postgres-physical"\ndsn = "postgresql://u@localhost/postgres"\n'
    )
    out = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == {"heavy": [], "source": "pitr", "threads": 2, "level": 5}
