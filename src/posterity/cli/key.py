"""``posterity key generate|show``, and ``key recipients …`` (``key_recipients.py``)."""

from __future__ import annotations

import click

from .common import json_option, pass_state
from .render import emit_json


@click.group("key")
def key_group() -> None:
    """Create and inspect encryption keys."""


@key_group.command("generate")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Where to write the identity (created 0600, never overwritten).")
@json_option
@pass_state
def generate(state, out: str) -> None:
    """Create an age identity (private key) file and print its public recipient (age1…).

    Put the recipient in [encryption] recipients on every backup host; keep the identity
    file safe (offline if you can): it is needed to restore and verify, and nothing else
    can decrypt the backups.
    """
    from ..pipeline import generate_identity

    recipient = generate_identity(out)
    if state.json:
        emit_json({"identity_file": out, "recipient": recipient})
    else:
        click.echo(recipient)
        click.echo(f"identity written to {out} (mode 0600); add the line above to [encryption] recipients", err=True)


@key_group.command("show")
@click.argument("identity_file", type=click.Path(exists=True, dir_okay=False))
def show(identity_file: str) -> None:
    """Print the public recipient(s) of an identity file."""
    from ..pipeline.keys import recipient_of_identity_file

    for r in recipient_of_identity_file(identity_file):
        click.echo(r)


def register(cli: click.Group) -> None:
    from .key_recipients import recipients_group

    key_group.add_command(recipients_group)
    cli.add_command(key_group)
