"""``posterity unlock [NAME]``: remove a lock left by a process that died."""

from __future__ import annotations

import click

from .common import pass_state


@click.command("unlock")
@click.argument("name", required=False)
@click.option("--all", "all_locks", is_flag=True, help="Remove every lock.")
@pass_state
def unlock(state, name: str | None, all_locks: bool) -> None:
    """Remove a repository lock. Only do this when no other posterity process is running."""
    repo = state.context().repo
    if not name and not all_locks:
        held = repo.locks()
        if not held:
            click.echo("no locks are held")
        for h in held:
            click.echo(f"{h.get('name')}: {h.get('operation')} on {h.get('host')} pid {h.get('pid')} since {h.get('created')} (expires {h.get('expires')})")
        return
    names = [h.get("name") for h in repo.locks()] if all_locks else [name]
    for n in names:
        if n and repo.unlock(n):
            click.echo(f"removed lock {n}")
        else:
            click.echo(f"no lock named {n}")


def register(cli: click.Group) -> None:
    cli.add_command(unlock)
