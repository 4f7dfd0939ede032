"""The zstd → age pipeline: round trips, integrity failures, and by-hand interop with the
standard `age` and `zstd` tools."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess

import pytest

from posterity.errors import ChecksumMismatch, DecryptionFailed, KeyError_, TruncatedObject
from posterity.pipeline import Stages, decode_to, encode, generate_identity, load_identities


@pytest.fixture
def key(tmp_path):
    recipient = generate_identity(tmp_path / "key.txt")
    return recipient, load_identities(tmp_path / "key.txt"), tmp_path / "key.txt"


def sample_bytes(n: int = 3_000_000) -> bytes:
    text = b"Posters.science abstract: protein folding under pressure. " * (n // 120)
    return text + os.urandom(n - len(text))


def encode_all(data: bytes, recipient: str, level: int = 3) -> tuple[bytes, str, int]:
    enc = encode(io.BytesIO(data), Stages((recipient,), zstd_level=level))
    blob = b"".join(enc)
    assert enc.size == len(blob)
    assert enc.raw_size == len(data)
    assert enc.sha256 == hashlib.sha256(blob).hexdigest()
    return blob, enc.sha256, enc.size


def test_roundtrip_restores_exact_bytes_and_compresses(key):
    recipient, identities, _ = key
    data = sample_bytes()
    blob, sha, size = encode_all(data, recipient)
    assert len(blob) < len(data)  # the text half compresses
    out = io.BytesIO()
    n = decode_to(iter([blob[i : i + 65_537] for i in range(0, len(blob), 65_537)]), out, identities,
                  key="k", expected_sha256=sha, expected_size=size)
    assert n == len(data) and out.getvalue() == data


def test_empty_stream_roundtrips(key):
    recipient, identities, _ = key
    blob, sha, size = encode_all(b"", recipient)
    out = io.BytesIO()
    decode_to(iter([blob]), out, identities, key="k", expected_sha256=sha, expected_size=size)
    assert out.getvalue() == b""


def test_flipped_byte_is_a_checksum_mismatch_naming_the_key(key):
    recipient, identities, _ = key
    blob, sha, size = encode_all(sample_bytes(), recipient)
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(ChecksumMismatch) as exc:
        decode_to(iter([bytes(bad)]), io.BytesIO(), identities, key="backups/db/x/db.pgdump.zst.age",
                  expected_sha256=sha, expected_size=size)
    assert "backups/db/x/db.pgdump.zst.age" in exc.value.message


def test_truncated_object_is_reported_as_truncated(key):
    recipient, identities, _ = key
    blob, sha, size = encode_all(sample_bytes(), recipient)
    with pytest.raises(TruncatedObject) as exc:
        decode_to(iter([blob[: size // 3]]), io.BytesIO(), identities, key="k", expected_sha256=sha,
                  expected_size=size)
    assert f"of {size} bytes" in exc.value.message


def test_wrong_identity_is_a_decryption_error(key, tmp_path):
    recipient, _, _ = key
    blob, sha, size = encode_all(b"secret rows", recipient)
    generate_identity(tmp_path / "other.txt")
    with pytest.raises(DecryptionFailed):
        decode_to(iter([blob]), io.BytesIO(), load_identities(tmp_path / "other.txt"), key="k",
                  expected_sha256=sha, expected_size=size)


def test_identity_file_problems_are_key_errors(tmp_path):
    with pytest.raises(KeyError_, match="does not exist"):
        load_identities(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("# nothing here\nnot-a-key\n")
    with pytest.raises(KeyError_):
        load_identities(tmp_path / "bad.txt")
    with pytest.raises(KeyError_):
        load_identities(None)


def test_generate_refuses_to_overwrite_and_is_private(tmp_path):
    generate_identity(tmp_path / "k.txt")
    assert (tmp_path / "k.txt").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyError_):
        generate_identity(tmp_path / "k.txt")


@pytest.mark.skipif(not (shutil.which("age") and shutil.which("zstd")), reason="age/zstd CLI not installed")
def test_standard_tools_decode_what_posterity_wrote(key):
    """The by-hand path: `age -d -i key.txt | zstd -d` recovers the original bytes."""
    recipient, _, key_file = key
    data = sample_bytes(1_000_000)
    blob, _, _ = encode_all(data, recipient)
    age = subprocess.run(["age", "-d", "-i", str(key_file)], input=blob, capture_output=True, check=True)
    plain = subprocess.run(["zstd", "-d", "-c"], input=age.stdout, capture_output=True, check=True)
    assert plain.stdout == data
