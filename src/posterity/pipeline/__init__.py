"""Turn a byte stream into stored bytes and back: zstd → age → sha256, streaming."""

from .keys import generate_identity, load_identities, parse_recipient
from .stages import EncodedStream, Stages, check_specs, decode_to, encode, encode_bytes

__all__ = [
    "EncodedStream",
    "Stages",
    "check_specs",
    "decode_to",
    "encode",
    "encode_bytes",
    "generate_identity",
    "load_identities",
    "parse_recipient",
]
