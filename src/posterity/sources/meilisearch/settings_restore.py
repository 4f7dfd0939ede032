"""Apply backed-up index settings to whatever Meilisearch version the restore targets.

First ``compat.adapt_settings`` drops what the target is known not to accept (by version and
experimental features). Then, as a safety net for versions newer than that table, a
synchronous refusal that names one top-level setting — ``bad_request`` "Unknown field `x`",
or ``feature_not_enabled`` for "setting `x`" / "Passing `x`" — drops that setting and tries
again (a bounded number of times). Every setting left out is reported in ``warnings``.
"""

from __future__ import annotations

import re
from typing import Any

from .client import MeiliApiError, MeiliClient
from .compat import adapt_settings, is_default, unknown_field

MAX_RETRIES = 8
_GATED = re.compile(r"(?:setting|Passing) `([A-Za-z]+)`")


def _refused_setting(exc: MeiliApiError, settings: dict[str, Any]) -> str | None:
    if exc.status != 400:
        return None
    name = None
    if exc.code == "bad_request":
        name = unknown_field(exc.message)
    elif exc.code == "feature_not_enabled":
        m = _GATED.search(exc.message)
        name = m.group(1) if m else None
    return name if name in settings else None


def apply_index_settings(client: MeiliClient, index: str, settings: dict[str, Any], source_uid: str,
                         warnings: list[str]) -> int:
    """PATCH ``settings`` (adapted) onto ``index``, wait for the task; return its uid."""
    adapted = adapt_settings(settings, client.info())
    for note in adapted.dropped:
        warnings.append(f"index {source_uid!r}: setting {note}")
    patch = adapted.settings
    for _ in range(MAX_RETRIES):
        try:
            uid = client.enqueue("PATCH", f"/indexes/{index}/settings", json=patch)
        except MeiliApiError as exc:
            name = _refused_setting(exc, patch)
            if name is None:
                raise
            value = patch.pop(name)
            if not is_default(name, value):
                warnings.append(
                    f"index {source_uid!r}: setting `{name}` was left out: Meilisearch refused it "
                    f"({exc.code}: {exc.message.split(': ', 1)[-1][:200]})"
                )
            continue
        client.wait_task(uid)
        return uid
    raise MeiliApiError(f"Meilisearch refused the settings of index {source_uid!r} {MAX_RETRIES} times; "
                        "see the warnings above for what was left out.")
