"""The rules of posterity.toml that need no schema library: ``${VAR}`` interpolation, the
repository URL, recipients and the numeric bounds.

Both readers use them: the full loader (``load.py`` + ``schema.py``, pydantic) and the lean
archive_command entry (``cli/walfast.py``), which runs once per WAL segment and cannot pay
for pydantic. One copy of each rule, so the two cannot drift. Import nothing heavy here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

STORE_SCHEMES = ("s3", "r2", "file")
RECIPIENT_PREFIXES = ("age1", "ssh-ed25519 ", "ssh-rsa ")

# (low, high): connect/request timeouts are > low; the others >= low; all <= high.
CONNECT_TIMEOUT = (0, 600)
REQUEST_TIMEOUT = (0, 3600)
MAX_PART_SIZE_MIB = (8, 5115)
ZSTD_LEVEL = (1, 19)
# Level 1, not zstd's own default 3: backing up the 2.37 GB benchmark database, Posterity's own
# CPU was 4.3 s at level 1 against 6.6 s at level 3, and it stored 235 MB against 241 MB
# (bench/logical_cpu.py; docs/benchmarks.md, "Where the CPU of a logical backup goes").
ZSTD_LEVEL_DEFAULT = 1
ZSTD_THREADS = (-1, 64)


def interpolate(value: Any, missing: Callable[[str, str], str], path: str = "") -> Any:
    """Replace ``${VAR}`` in every string (``$${`` is a literal ``${``); ``missing(path, name)``
    answers for a variable that is not set (records a problem, or raises)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name = m.group(1)
            if name not in os.environ:
                return missing(path, name)
            return os.environ[name]

        return VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: interpolate(v, missing, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, missing, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def check_store_url(v: str) -> str:
    """``[repository] url``: a known scheme, and an absolute path for file://; ValueError otherwise."""
    if "://" not in v:
        raise ValueError("must be a URL like s3://bucket/prefix, r2://account/bucket/prefix or file:///path")
    scheme, rest = v.split("://", 1)
    if scheme == "memory":
        raise ValueError("memory:// keeps backups in the process's memory, gone when it exits; "
                         "use s3://, r2:// or file:///absolute/path")
    if scheme not in STORE_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; use s3://, r2:// or file://")
    if scheme == "file" and not (rest.startswith("/") or rest.startswith("localhost/")):
        raise ValueError(f"{v!r} is not an absolute path (file://{rest} would be read as a host name "
                         f"or relative folder); write file:///absolute/path, with three slashes")
    return v


def check_recipients(v: list[str]) -> list[str]:
    """``[encryption] recipients``: each an age (or SSH) public key that parses; ValueError otherwise."""
    from ..errors import KeyError_
    from ..pipeline.keys import parse_recipient

    for i, r in enumerate(v):
        if not isinstance(r, str) or not r.startswith(RECIPIENT_PREFIXES):
            raise ValueError(f"[{i}] {str(r)[:12]!r}… is not an age public key (age1…)")
        try:
            parse_recipient(r)
        except KeyError_ as exc:  # right prefix, wrong body: a typo or a cut-off copy
            raise ValueError(f"[{i}] {r[:16]!r}… is not a valid age public key (a typo, or cut off "
                             "when copied?); copy it again from `posterity key generate` or "
                             "`age-keygen -y key.txt`") from exc
    return v
