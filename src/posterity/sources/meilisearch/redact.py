"""Keep secrets out of the manifest: embedder secrets in index settings, and any key value.

The metadata artifact keeps everything (it is encrypted like every payload); the manifest's
facts, which ``show`` prints, get the redacted copy, and ``scrub`` is the last pass over them.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"key|token|secret|password|authorization|credential", re.I)


def redact_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of an index's settings safe for the manifest: embedder secrets replaced."""
    out = copy.deepcopy(settings)
    for config in (out.get("embedders") or {}).values():
        if isinstance(config, dict):
            _redact(config)
    return out


def _redact(node: dict[str, Any]) -> None:
    for name, value in list(node.items()):
        if name == "headers" and isinstance(value, dict):
            node[name] = dict.fromkeys(value, REDACTED)
        elif isinstance(value, dict):
            _redact(value)
        elif isinstance(value, str) and value and _SECRET_NAME.search(name):
            node[name] = REDACTED
        elif name == "url" and isinstance(value, str):
            node[name] = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\g<1>" + REDACTED + "@", value)


def scrub(facts: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """Last line of defence: no secret string survives into the manifest, wherever it hid."""
    text = json.dumps(facts, ensure_ascii=False)
    for s in sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True):
        text = text.replace(json.dumps(s, ensure_ascii=False)[1:-1], REDACTED)
    return json.loads(text)
