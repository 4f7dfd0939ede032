"""Helpers for the files-source tests: a realistic configuration tree, an exact snapshot of
a tree (types, modes, owners, nanosecond mtimes, contents, link targets, hard-link groups),
and the in-process ``posterity`` command."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from posterity.cli.main import main

AS_ROOT = os.geteuid() == 0
T0 = 1_600_000_000_123_456_789  # an mtime with nanoseconds, to prove they survive


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys, config: Path, *args: str) -> Result:
    """``posterity --config CONFIG ARGS…`` in this process; the exit code and output."""
    capsys.readouterr()
    try:
        main(["--config", str(config), *args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return Result(code, out, err)


def _touch(p: Path, ns: int) -> None:
    os.utime(p, ns=(ns, ns), follow_symlinks=False)


def make_tree(base: Path) -> list[str]:
    """A configuration tree like the platform's; returns the configured (absolute) paths."""
    app = base / "etc" / "posters-science"
    (app / "bin").mkdir(parents=True)
    (app / "empty").mkdir()
    (app / "café").mkdir()
    (app / "cache" / "deep").mkdir(parents=True)
    (app / "app.toml").write_text('[server]\nport = 8080\nname = "posters"\n')
    (app / "secret.env").write_text("DATABASE_PASSWORD=hunter2\n")
    (app / "bin" / "run.sh").write_text("#!/bin/sh\nexec posters\n")
    (app / "café" / "日本語 設定.conf").write_text("ünïcödé = true\n")
    (app / ("long-" + "x" * 150 + ".conf")).write_text("pax names beyond 100 bytes\n")
    (app / "scratch.tmp").write_text("excluded\n")
    (app / "cache" / "deep" / "blob").write_bytes(os.urandom(1000))
    (app / "current.toml").symlink_to("app.toml")
    os.link(app / "app.toml", app / "hardlinked.toml")
    os.chmod(app / "secret.env", 0o600)
    os.chmod(app / "bin" / "run.sh", 0o755)
    os.chmod(app / "empty", 0o750)
    os.chmod(app / "app.toml", 0o640)
    if AS_ROOT:
        os.chown(app / "app.toml", 1234, 4321)
        os.chown(app / "secret.env", 65534, 65534)
        os.lchown(app / "current.toml", 1234, 4321)
        os.chown(app / "empty", 1234, 4321)

    nginx = base / "etc" / "nginx"
    (nginx / "sites-available").mkdir(parents=True)
    (nginx / "sites-enabled").mkdir()
    (nginx / "sites-available" / "posters").write_text("server { listen 80; }\n")
    # nginx's usual absolute link, pointing outside the backed-up paths
    (nginx / "sites-enabled" / "posters").symlink_to(nginx / "sites-available" / "posters")
    (nginx / "sites-enabled" / "dangling").symlink_to("../nowhere")

    meili = base / "etc" / "meilisearch.toml"
    meili.write_text('env = "production"\n')

    for i, p in enumerate(sorted(base.rglob("*"), key=lambda p: -len(p.parts))):
        _touch(p, T0 + i * 1_000_000_007)
    return [str(app), str(nginx / "sites-enabled"), str(meili)]


def snapshot(base: Path, roots: list[str]) -> dict[str, tuple]:
    """Every entry under ``base``/root (root given as an absolute path), keyed by path.

    Values: (type, mode, uid, gid, mtime_ns, sha256 or link target, hard-link group).
    """
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}

    def record(path: str, key: str) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            kind, body = "symlink", os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            kind, body = "dir", ""
        else:
            kind, body = "file", hashlib.sha256(Path(path).read_bytes()).hexdigest()
        group = ""
        if kind == "file" and st.st_nlink > 1:
            group = inodes.setdefault((st.st_dev, st.st_ino), key)
        out[key] = (
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            body,
            group,
        )

    for root in roots:
        top = f"{base}/{root.lstrip('/')}"
        record(top, root)
        if os.path.isdir(top) and not os.path.islink(top):
            for folder, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(dirs + files):
                    full = f"{folder}/{name}"
                    record(full, root + full[len(top) :])
    return out
