"""Exclude patterns of a files source, as globs: ``**`` spans folders, ``*`` and ``?`` do not."""

from __future__ import annotations

import re


def _translate(pattern: str) -> str:
    """A glob as a regex: ``**`` spans folders, ``*`` and ``?`` stay within one name."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class Excluder:
    """Exclude patterns: without a ``/`` a pattern matches a name at any depth (``*.tmp``);
    with one it matches the absolute path (anchored when it starts with ``/``, otherwise at
    any depth, so ``**/cache/**`` and ``cache/**`` both skip every cache folder's content).
    A trailing ``/`` limits a pattern to folders."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[tuple[re.Pattern[str], bool, bool]] = []  # (regex, on_name, dirs_only)
        for raw in patterns:
            p = raw.strip()
            dirs_only = p.endswith("/") and len(p) > 1
            p = p.rstrip("/") or "/"
            if "/" not in p:
                self.rules.append((re.compile(_translate(p), re.S), True, dirs_only))
            elif p.startswith("/"):
                self.rules.append((re.compile(_translate(p), re.S), False, dirs_only))
            else:
                self.rules.append((re.compile("/(?:.*/)?" + _translate(p), re.S), False, dirs_only))

    def __call__(self, path: str, is_dir: bool) -> bool:
        name = path.rsplit("/", 1)[-1]
        for rx, on_name, dirs_only in self.rules:
            if dirs_only and not is_dir:
                continue
            if rx.fullmatch(name if on_name else path):
                return True
        return False
