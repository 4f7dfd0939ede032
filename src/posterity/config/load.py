"""Find, read, interpolate and validate posterity.toml.

Search order: ``--config``, ``$POSTERITY_CONFIG``, ``./posterity.toml``. ``${VAR}`` in any
string is replaced from the environment (``$${`` for a literal ``${``); a variable that is
not set is an error naming the key. Every problem is reported with its key path and a fix,
all at once, never as a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from . import plain
from .schema import Config


class ConfigProblems(ConfigError):
    """The configuration has problems."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.problems = problems
        where = f" in {path}" if path else ""
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s){where}:\n{body}")


def find_config(explicit: str | Path | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"The config file {p} does not exist.", hint="Check --config, or run `posterity config example > posterity.toml`.")
        return p
    env = os.environ.get("POSTERITY_CONFIG")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"POSTERITY_CONFIG names {p}, which does not exist.")
        return p
    p = Path("posterity.toml")
    if p.is_file():
        return p
    raise ConfigError(
        "No posterity.toml found (looked at --config, $POSTERITY_CONFIG and ./posterity.toml).",
        hint="Run `posterity config example > posterity.toml` and edit it.",
    )


def _interpolate(value: Any, path: str, problems: list[str]) -> Any:
    def missing(where: str, name: str) -> str:
        problems.append(f"{where}: environment variable {name} is not set (export it, or write the value).")
        return ""

    return plain.interpolate(value, missing, path)


def _format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        loc = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"]
        kind = err["type"]
        if kind == "missing":
            fix = "add it"
        elif kind == "extra_forbidden":
            fix = "remove it or check its spelling (`posterity config example` lists every key)"
        else:
            fix = "see `posterity config example`"
        out.append(f"{loc or '(top level)'}: {msg} — {fix}")
    return out


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate an already-parsed TOML document (interpolation included)."""
    from ..sources.registry import source_model

    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigProblems(path, ["(top level): must be a table"])
    data = _interpolate(data, "", problems)
    raw_sources = data.get("sources", {})
    config: Config | None = None
    try:
        config = Config.model_validate({**data, "sources": {}})
    except ValidationError as exc:
        problems.extend(_format_errors(exc))
    sources: dict[str, BaseModel] = {}
    if not isinstance(raw_sources, dict):
        problems.append("sources: must be a table of [sources.NAME] sections")
        raw_sources = {}
    for name, body in raw_sources.items():
        where = f"sources.{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", str(name)):
            problems.append(f"{where}: source names use lowercase letters, digits, - and _ — rename it")
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a table")
            continue
        kind = body.get("kind")
        try:
            model = source_model(kind)
        except ConfigError as exc:
            problems.append(f"{where}.kind: {exc.message} — {exc.hint}")
            continue
        try:
            sources[name] = model.model_validate(body)
        except ValidationError as exc:
            problems.extend(_format_errors(exc, where))
    if config is not None:
        for i, sched in enumerate(config.schedule):
            unknown = [x for x in sched.sources if x not in raw_sources]
            if unknown:
                known = ", ".join(sorted(map(str, raw_sources))) or "none"
                problems.append(f"schedule[{i}].sources: {', '.join(map(repr, unknown))} "
                                f"{'is' if len(unknown) == 1 else 'are'} not a configured source "
                                f"(configured: {known}) — fix the name or add a [sources.NAME] section")
    if problems or config is None:
        raise ConfigProblems(path, problems or ["invalid configuration"])
    config.sources = sources
    return config


def load_config(explicit: str | Path | None = None) -> tuple[Config, Path]:
    path = find_config(explicit)
    try:
        raw = path.read_bytes()
    except PermissionError as exc:
        import getpass

        raise ConfigError(
            f"Cannot read {path}: {exc.strerror} (this runs as user {getpass.getuser()}).",
            hint="Let that user read the file: e.g. `chgrp postgres FILE && chmod 640 FILE` when "
            "PostgreSQL's archive_command or restore_command reads it (see README, Install on a server).",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigProblems(path, [f"line {line}, column {col}: byte 0x{raw[exc.start]:02x} is not valid UTF-8 "
                                    "— save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"]) from exc
    return loads_config(text, path), path


def loads_config(text: str, path: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblems(path, [f"not valid TOML: {exc} — fix the syntax at that line"]) from exc
    return parse_config(data, path)
