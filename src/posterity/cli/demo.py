"""``posterity demo``: backup and restore end to end on a throwaway database."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--posters", default=2000, show_default=True, help="How many sample posters to load.")
@click.option("--keep", is_flag=True, help="Keep the demo folder (repository, key, config) afterwards.")
def demo(posters: int, keep: bool) -> None:
    """Run the main job on embedded defaults: throwaway PostgreSQL with sample data, a local
    repository, a new key; backup, list, restore into a new database, and compare."""
    from ..demo.run import run_demo

    raise SystemExit(run_demo(posters, keep))


def register(cli: click.Group) -> None:
    cli.add_command(demo)
