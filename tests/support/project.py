"""Helpers to drive the real ``posterity`` command against a throwaway setup."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from posterity.pipeline import generate_identity

POSTERITY = [sys.executable, "-m", "posterity"]


@dataclass
class Project:
    """A folder with posterity.toml, a key and a repository URL."""

    root: Path
    repo_url: str
    recipient: str
    sources: dict[str, dict[str, object]] = field(default_factory=dict)
    repo_extra: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> Path:
        return self.root / "key.txt"

    @property
    def config(self) -> Path:
        return self.root / "posterity.toml"

    def write_config(self, identity: Path | None = None) -> None:
        lines = ["[repository]", f'url = "{self.repo_url}"']
        lines += [f'{k} = "{v}"' for k, v in self.repo_extra.items()]
        lines += ["", "[encryption]", f'recipients = ["{self.recipient}"]']
        lines.append(f'identity_file = "{identity or self.key}"')
        lines += [
            "",
            "[general]",
            f'state_dir = "{self.root / "state"}"',
            f'staging_dir = "{self.root / "staging"}"',
        ]
        for name, body in self.sources.items():
            lines += ["", f"[sources.{name}]"]
            for k, v in body.items():
                if isinstance(v, bool):
                    lines.append(f"{k} = {'true' if v else 'false'}")
                elif isinstance(v, int):
                    lines.append(f"{k} = {v}")
                elif isinstance(v, list):
                    lines.append(
                        f"{k} = [{', '.join(repr(str(x)).replace(chr(39), chr(34)) for x in v)}]"
                    )
                else:
                    lines.append(f'{k} = "{v}"')
        self.config.write_text("\n".join(lines) + "\n")

    def run(
        self,
        *args: str,
        check: bool = False,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ):
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env.pop("POSTERITY_CONFIG", None)
        proc = subprocess.run(
            [*POSTERITY, "--config", str(self.config), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"posterity {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


#: A postgres source that makes split backups of any size: every non-empty table its own archive or batch.
SPLIT = {"jobs": 2, "part_size_mib": 0}


def make_project(root: Path, repo_url: str, **repo_extra: str) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    recipient = generate_identity(root / "key.txt")
    return Project(root=root, repo_url=repo_url, recipient=recipient, repo_extra=dict(repo_extra))


@dataclass
class InProcessRun:
    """What one in-process run of the command line printed and returned."""

    code: int
    out: str
    err: str

    # The names subprocess.CompletedProcess uses, for tests written against those.
    @property
    def returncode(self) -> int:
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self):
        import json

        return json.loads(self.out)


def run_in_process(p: Project, *args: str, env: dict[str, str] | None = None) -> InProcessRun:
    """The real ``posterity`` command line, run in this process (a subprocess costs ~1 s here)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    import pytest

    from posterity.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**p.env, "COLUMNS": "200", **(env or {})}.items():
            mp.setenv(k, v)
        mp.delenv("POSTERITY_CONFIG", raising=False)
        mp.chdir(p.root)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(["--config", str(p.config), *args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return InProcessRun(code, out.getvalue(), err.getvalue())
