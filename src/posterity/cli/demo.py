"""``posterity demo``: backup and restore end to end on a throwaway database."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--posters", default=2000, show_default=True, help="How many sample posters to load.")
@click.option("--keep", is_flag=True, help="Keep the demo folder (repository, key, config) afterwards.")
@click.option("--web", "web", is_flag=True,
              help="Also drill the backup, then serve the dashboard over the demo repository until Ctrl-C "
              "(keeps the folder).")
@click.option("--web-listen", default="127.0.0.1:9851", show_default=True, metavar="HOST:PORT",
              help="Where --web serves the dashboard.")
def demo(posters: int, keep: bool, web: bool, web_listen: str) -> None:
    """Run the main job on embedded defaults: throwaway PostgreSQL with sample data, a local
    repository, a new key; backup, list, restore into a new database, and compare. With
    --web, drill the backup too and open the dashboard on it (`posterity web`)."""
    from ..demo.run import run_demo

    raise SystemExit(run_demo(posters, keep, web_listen if web else None))


def register(cli: click.Group) -> None:
    cli.add_command(demo)
