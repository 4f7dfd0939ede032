"""Mistakes a user can make are named, with their key path or file and a hint — never
"unexpected … please report it" — and `config check` finds the configuration ones before
any other command trips over them. Each exit code is the README's.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests.reliability.harness import S3_CREDENTIALS, Setup, s3_env
from tests.support.pitr import AS_ROOT, Env, chown_owner


def _problems(s: Setup) -> str:
    r = s.run("config", "check")
    assert r.code == 2, r
    assert "unexpected" not in r.text and "Traceback" not in r.text, r
    return r.err


def _edit(s: Setup, old: str, new: str) -> None:
    text = s.config.read_text()
    assert old in text
    s.config.write_text(text.replace(old, new))


def test_schedule_naming_an_unknown_source_is_caught_by_config_check(local_setup: Setup):
    s = local_setup
    s.more_sources = '[[schedule]]\nname = "nightly"\ncron = "0 2 * * *"\nsources = ["db", "dbb"]\n'
    s.write_config()
    err = _problems(s)
    assert "schedule[0].sources: 'dbb' is not a configured source (configured: db)" in err, err


def test_malformed_recipient_is_caught_by_config_check(local_setup: Setup):
    s = local_setup
    _edit(s, s.recipient, s.recipient[:-3] + "qqq")  # right prefix, wrong checksum
    err = _problems(s)
    assert "encryption.recipients: Value error, [0] " in err and "is not a valid age public key" in err, err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://prod", "memory:// keeps backups in the process's memory"),
        ("file://backups/prod", "is not an absolute path"),
    ],
)
def test_unusable_repository_urls_are_caught_by_config_check(local_setup: Setup, url, expected):
    s = local_setup
    _edit(s, s.repo_url, url)
    err = _problems(s)
    assert "repository.url: Value error" in err and expected in err, err


def test_invalid_utf8_in_the_config_names_its_line(local_setup: Setup):
    s = local_setup
    raw = s.config.read_bytes().replace(b"[sources.db]\n", b"[sources.db]\n# caf\xe9\n")
    s.config.write_bytes(raw)
    line = raw[: raw.index(b"\xe9")].count(b"\n") + 1
    for args in (("config", "check"), ("backup", "db")):
        r = s.run(*args)
        assert r.code == 2, r
        assert f"line {line}, column 6: byte 0xe9 is not valid UTF-8" in r.err, r
        assert "unexpected" not in r.err


def test_a_missing_bucket_is_a_storage_error_not_run_init(tmp_path, module_db, s3_server):
    s = Setup(tmp_path / "env", "s3://no-such-bucket-i14w/repo", module_db.dsn, endpoint=s3_server.endpoint,
              env=s3_env(s3_server), repo_extra=S3_CREDENTIALS)
    for args in (("backup", "db"), ("list",)):
        r = s.run(*args)
        assert r.code == 4, r
        assert "error: The bucket of s3://no-such-bucket-i14w/repo" in r.err and "does not exist." in r.err, r
        assert "posterity init" not in r.err, r


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run the command as the postgres user")
def test_wal_push_into_a_folder_postgres_cannot_write_is_exit_4_with_a_hint():
    work = Path(tempfile.mkdtemp(prefix="posterity-i14w-"))
    work.chmod(0o755)
    e = Env(work)
    e.write_config("postgresql://replicator@127.0.0.1:1/postgres")
    chown_owner(e.config, e.key)
    e.ok("init")  # as root: the repository folder is root's, 0755
    seg = work / "000000010000000000000001"
    seg.write_bytes(os.urandom(1 << 16) * 256)
    chown_owner(seg)
    p = subprocess.run(["runuser", "-u", "postgres", "--", e.command, "-c", str(e.config), "wal", "push",
                        "--source", "pitr", str(seg)], capture_output=True, text=True, cwd=work, check=False)
    assert p.returncode == 4, p
    assert f"in file://{e.repo} failed: permission denied ({e.repo}/wal)" in p.stderr, p
    assert f"hint: User postgres must be able to write the repository folder: e.g. `chown -R postgres {e.repo}`" \
        in p.stderr, p
    assert "unexpected" not in p.stderr
    assert not list((e.repo).glob("wal/**/*.age"))


def test_an_os_error_no_adapter_converted_is_named_not_unexpected(local_setup: Setup):
    """The CLI's last resort for OSError (here: writing a key into a folder that does not
    exist) is exit 11 naming the file, not exit 1 "unexpected FileNotFoundError"."""
    s = local_setup
    target = s.root / "no-such-folder" / "key.txt"
    r = s.run("key", "generate", "-o", str(target))
    assert r.code == 11, r
    assert f"error: No such file or folder: {target}." in r.err, r
    assert "unexpected" not in r.err


def test_every_exit_code_is_in_the_readme_table():
    import re

    from posterity.errors import EXIT_CODES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert codes == set(EXIT_CODES), (codes ^ set(EXIT_CODES))


def test_walfast_push_refuses_a_memory_repository_instead_of_losing_wal(local_setup: Setup):
    """The lean archive_command entry read memory:// itself and exited 0: the WAL segment
    "archived" into a process that then ended. It now defers to the full loader's error."""
    import sys

    s = local_setup
    s.more_sources = '[sources.pitr]\nkind = "postgres-physical"\ndsn = "postgresql://x@127.0.0.1:1/postgres"\n'
    s.write_config()
    _edit(s, s.repo_url, "memory://prod")
    seg = s.root / "000000010000000000000001"
    seg.write_bytes(b"\0" * (16 << 20))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTERITY_"))}
    p = subprocess.run([sys.executable, "-m", "posterity.cli.walfast", "push", "-c", str(s.config),
                        "--source", "pitr", str(seg)], capture_output=True, text=True, env=env, cwd=s.root,
                       check=False, timeout=60)
    assert p.returncode == 2, p
    assert "repository.url: Value error, memory:// keeps backups in the process's memory" in p.stderr, p


@pytest.mark.skipif(not AS_ROOT, reason="needs root to run the command as the postgres user")
@pytest.mark.parametrize("entry", ["posterity", "posterity-wal"])
def test_a_config_postgres_cannot_read_is_named_with_the_user_and_a_hint(entry: str):
    """archive_command runs as postgres: a config only root can read is a configuration error
    naming the user and the fix (both entry points), not "unexpected PermissionError"."""
    work = Path(tempfile.mkdtemp(prefix="posterity-cfgperm-"))
    work.chmod(0o755)
    e = Env(work)
    e.write_config("postgresql://replicator@127.0.0.1:1/postgres")
    e.config.chmod(0o600)  # root's, unreadable by postgres
    seg = work / "000000010000000000000001"
    seg.write_bytes(b"\0" * (1 << 16))
    chown_owner(seg)
    command = str(Path(e.command).with_name(entry))
    args = ["push", "-c", str(e.config)] if entry == "posterity-wal" else ["-c", str(e.config), "wal", "push"]
    p = subprocess.run(["runuser", "-u", "postgres", "--", command, *args, "--source", "pitr", str(seg)],
                       capture_output=True, text=True, cwd=work, check=False)
    assert p.returncode == 2, p
    assert f"Cannot read {e.config}: Permission denied (this runs as user postgres)." in p.stderr, p
    assert "chmod 640" in p.stderr.split("hint:")[1], p
    assert "unexpected" not in p.stderr
