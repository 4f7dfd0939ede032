"""age keys: recipients (public, on backup hosts) and identities (private, for restore).

Encryption is public-key: a host that only holds recipients cannot read old backups.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyrage

from ..errors import KeyError_


def parse_recipient(text: str):
    text = text.strip()
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(text)
    except Exception as exc:
        raise KeyError_(
            f"The recipient {text[:16]}… is not a valid age public key.",
            hint="Recipients look like age1… (from `posterity key generate` or `age-keygen -y key.txt`).",
        ) from exc
    raise KeyError_(
        f"The recipient {text[:16]!r}… is not an age (age1…) or ssh-ed25519 public key.",
        hint="Recipients look like age1… (from `posterity key generate` or `age-keygen -y key.txt`).",
    )


def load_identities(path: str | Path | None) -> list:
    """Read an age identity file (``AGE-SECRET-KEY-1…`` lines; ``#`` comments ignored)."""
    if not path:
        raise KeyError_(
            "No identity file is configured, and this operation needs the private key to decrypt.",
        )
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError as exc:
        raise KeyError_(f"The identity file {p} does not exist.") from exc
    except PermissionError as exc:
        raise KeyError_(f"The identity file {p} is not readable by this user.") from exc
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception as exc:
            raise KeyError_(f"The identity file {p} holds a line that is not an age identity.") from exc
    if not identities:
        raise KeyError_(f"The identity file {p} holds no AGE-SECRET-KEY-… line.")
    return identities


def generate_identity(out: str | Path) -> str:
    """Write a new identity to ``out`` (mode 0600, refuses to overwrite); return its recipient."""
    ident = pyrage.x25519.Identity.generate()
    recipient = str(ident.to_public())
    from datetime import UTC, datetime

    body = (
        f"# created: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"# public key: {recipient}\n"
        f"{ident}\n"
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyError_(f"{out} already exists; it was not overwritten.", hint="Choose another --out path.") from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(body)
    return recipient


def recipient_of_identity_file(path: str | Path) -> list[str]:
    return [str(i.to_public()) for i in load_identities(path)]
