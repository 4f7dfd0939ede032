"""An error a source raises inside the stream the encoder reads keeps its type.

Found (issue 13, "also"): a Meilisearch refusal raised while age encryption read the export
stream came out as "unexpected EncryptError … please report it" (exit 1): zstd and age
wrap an exception raised while they read. The source's own error (exit 5, Meilisearch's
words) must reach the user, through the pipeline and through ``write_payload``, and the
half-written payload must not exist. Issue 15: its hint also says that nothing was committed,
as a failed pg_dump's or tar's does.
"""

from __future__ import annotations

import io

import pytest

from posterity.errors import DumpFailed, say_nothing_committed
from posterity.pipeline import Stages, encode, generate_identity
from posterity.repository import Repository
from posterity.sources.meilisearch.client import MeiliApiError
from posterity.sources.meilisearch.source import DocumentCountMismatch
from posterity.storage import open_store


class RefusingStream(io.RawIOBase):
    """Gives ``good`` bytes, then raises what the Meilisearch client raises on a refusal."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise MeiliApiError(
                "Meilisearch refused POST /indexes/posters/documents/fetch: Index `posters` not found.",
                status=404,
                code="index_not_found",
            )
        n = min(self.left, size if size > 0 else 1 << 16)
        self.left -= n
        return b"x" * n


@pytest.mark.parametrize("good", [0, 3 << 20])
def test_source_refusal_inside_the_encoder_keeps_its_type_and_exit_code(tmp_path, good):
    stages = Stages((generate_identity(tmp_path / "key.txt"),))
    with pytest.raises(MeiliApiError) as caught:
        for _ in encode(RefusingStream(good), stages):
            pass
    assert caught.value.exit_code == 5 and caught.value.code == "index_not_found"
    assert "Index `posters` not found" in str(caught.value)
    # Like a failed pg_dump or tar: the user learns that nothing was committed, and still
    # gets Meilisearch's own hint after it.
    assert caught.value.hint.startswith("Nothing was committed; earlier backups are intact."), caught.value.hint
    assert "error_codes" in caught.value.hint, caught.value.hint


def test_write_payload_reports_the_source_refusal_and_stores_nothing(tmp_path):
    stages = Stages((generate_identity(tmp_path / "key.txt"),))
    store = open_store(f"file://{tmp_path / 'repo'}")
    repo = Repository(store)
    key = "backups/search/20260101T000000Z-abcd/index-posters.ndjson.zst.age"
    with pytest.raises(MeiliApiError) as caught:
        repo.write_payload(key, RefusingStream(12 << 20), stages)
    assert store.stat(key) is None
    assert caught.value.to_dict()["hint"].count("Nothing was committed") == 1, caught.value.hint


def test_an_error_that_already_says_nothing_was_committed_is_not_told_twice():
    err = DumpFailed("pg_dump failed: lock timeout.")
    assert say_nothing_committed(err) is err
    assert err.hint == DumpFailed.default_hint and type(err) is DumpFailed and err.exit_code == 5
    said = DocumentCountMismatch("Index 'posters' changed while it was read; nothing was committed.", hint="Retry.")
    assert say_nothing_committed(said).hint == "Retry."
