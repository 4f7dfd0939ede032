"""Turn a byte stream into stored bytes and back: zstd → age → sha256, streaming."""

from .decode import decode_to
from .encode import EncodedStream, encode, encode_bytes
from .keys import generate_identity, load_identities, parse_recipient
from .stages import Stages, check_specs

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
