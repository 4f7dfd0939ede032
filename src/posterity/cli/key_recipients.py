"""``posterity key recipients list|add|remove|rotate``: the recipients the repository expects.

Each change is a new version (``keys/recipients-NNNNNN.json``, written once; the old kept)
and an audit record. Backups are refused while [encryption] recipients differ from the
newest version (``repository/recipients.py``).
"""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json

REASON = click.option("--reason", default="", help="Why (kept in the version record and the audit log).")


@click.group("recipients")
def recipients_group() -> None:
    """Show and change the recipients this repository expects backups to be encrypted to."""


@recipients_group.command("list")
@json_option
@pass_state
def list_cmd(state) -> None:
    """Every recorded version of the repository's recipients (fingerprints), newest last."""
    from ..repository.recipients import history

    ctx = state.context()
    versions = history(ctx.repo)
    if state.json:
        emit_json([v.to_dict() for v in versions])
        return
    for v in versions:
        who = f" by {v.user}@{v.host}" if v.host else ""
        why = f" — {v.reason}" if v.reason else ""
        click.echo(f"version {v.version} ({v.created}{who}){why}")
        for f in v.fingerprints:
            name = v.recipients.get(f)
            click.echo(f"  {f}" + (f"  {name}" if name else ""))
    from ..repository.repository import fingerprint

    configured = {fingerprint(r) for r in ctx.config.encryption.recipients}
    if configured == set(versions[-1].fingerprints):
        click.echo("the configured [encryption] recipients match the newest version")
    else:
        click.echo("the configured [encryption] recipients DIFFER from the newest version: backups are refused",
                   err=True)


def _change(state, op: str, new: set[str], names: dict[str, str], reason: str) -> None:
    from ..repository.recipients import record

    ctx = state.context()
    version = record(ctx.repo, sorted(new), reason=reason, names=names, op=op)
    if state.json:
        emit_json(version.to_dict())
        return
    click.echo(f"recorded recipients version {version.version} ({version.key}); version {version.previous} is kept")
    for f in version.added:
        click.echo(f"  + {f}")
    for f in version.removed:
        click.echo(f"  - {f}")


def _parse(recipient: str) -> str:
    from ..errors import ConfigError
    from ..pipeline.keys import parse_recipient

    try:
        parse_recipient(recipient)
    except Exception as exc:
        raise ConfigError(f"{recipient[:20]}… is not an age recipient: {exc}",
                          hint="Give the public key (age1…) that `posterity key show key.txt` prints.") from None
    return recipient


@recipients_group.command("add")
@click.argument("recipient")
@REASON
@json_option
@pass_state
def add(state, recipient: str, reason: str) -> None:
    """Record RECIPIENT (age1…) as one more recipient of the repository."""
    from ..repository.recipients import current
    from ..repository.repository import fingerprint

    _parse(recipient)
    fp = fingerprint(recipient)
    now = set(current(state.context().repo).fingerprints)
    _change(state, "key-recipients-add", now | {fp}, {fp: recipient}, reason)


@recipients_group.command("remove")
@click.argument("recipient_or_fingerprint")
@REASON
@json_option
@pass_state
def remove(state, recipient_or_fingerprint: str, reason: str) -> None:
    """Stop expecting a recipient (give its age1… key or its sha256:… fingerprint)."""
    from ..errors import ConfigError
    from ..repository.recipients import current
    from ..repository.repository import fingerprint

    text = recipient_or_fingerprint
    fp = text if text.startswith("sha256:") else fingerprint(text)
    now = set(current(state.context().repo).fingerprints)
    if fp not in now:
        raise ConfigError(f"{fp} is not among the repository's recipients.",
                          hint="`posterity key recipients list` shows them.")
    _change(state, "key-recipients-remove", now - {fp}, {}, reason)


@recipients_group.command("rotate")
@REASON
@json_option
@pass_state
def rotate(state, reason: str) -> None:
    """Record the recipients now in [encryption] as the repository's (after a key rotation).

    Backups taken before stay encrypted to the old recipients: keep their identities until
    those backups expire.
    """
    from ..repository.repository import fingerprint

    recipients = list(state.context().config.encryption.recipients)
    names = {fingerprint(r): r for r in recipients}
    _change(state, "key-recipients-rotate", set(names), names, reason)
