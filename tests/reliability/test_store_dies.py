"""The object store dies (SIGKILL) in the middle of a large upload.

Found (issue 11.4): 5 of 5 runs ended in "Fatal Python error: Aborted" in ``queue.notify``
with exit 134 — the pipeline's generator was finalised at interpreter shutdown while
obstore still held it — and the error printed named the lock object (its release failed
too), hiding the payload failure. Now: exit 4, the payload named, no crash.

The test starts a SeaweedFS of its own (killing the session's would break other tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from tests.reliability.harness import S3_CREDENTIALS, Setup, s3_env
from tests.support.seaweed import SeaweedS3, find_weed

SIZE = 100 << 20


@pytest.fixture
def doomed_s3(tmp_path):
    if find_weed() is None:
        pytest.skip("SeaweedFS 'weed' binary unavailable")
    server = SeaweedS3(tmp_path / "weed")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "weed", ignore_errors=True)


def test_store_killed_mid_upload_reports_the_payload_failure_without_crashing(tmp_path, doomed_s3, module_db):
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "big.bin", "wb") as f:  # incompressible: the upload takes its time
        for _ in range(SIZE >> 20):
            f.write(os.urandom(1 << 20))
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    doomed_s3.create_bucket(bucket)
    s = Setup(
        tmp_path / "env",
        f"s3://{bucket}/repo",
        module_db.dsn,
        endpoint=doomed_s3.endpoint,
        env=s3_env(doomed_s3),
        repo_extra=S3_CREDENTIALS,
        more_sources=f'[sources.etc]\nkind = "files"\npaths = ["{data}"]\n',
    )
    s.init()
    proc = s.popen("backup", "etc")
    # Kill the store once the multipart upload is under way (a part has reached its disk).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _stored_bytes(doomed_s3.base_dir) < (16 << 20):
        time.sleep(0.05)
    assert proc.poll() is None, "the backup ended before the store was killed"
    assert doomed_s3.proc is not None
    doomed_s3.proc.kill()
    doomed_s3.proc.wait()
    _out, err = proc.communicate(timeout=300)
    assert "Fatal Python error" not in err, err
    assert proc.returncode == 4, (proc.returncode, err[-3000:])
    assert "backups/etc/" in err and "files.tar" in err, err  # the payload, not the lock
    assert "locks/" not in err.split("error:", 1)[-1].splitlines()[0], err


def _stored_bytes(base: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(base / "data"):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total
