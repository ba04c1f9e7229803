"""Production commands: `copines migrate` applies the Postgres migrations."""

from __future__ import annotations

import asyncio
import sys

import click

from copines.config import get_settings
from copines.errors import CopinesError


def register(main: click.Group) -> None:
    main.add_command(migrate)


@click.command()
@click.option("--list", "show", is_flag=True, help="list the migrations and whether they ran")
def migrate(show: bool) -> None:
    """Create or upgrade the Postgres schema (DATABASE_URL); SQLite migrates itself on open."""
    from copines.store.pg_migrate import migrate as run_migrations
    from copines.store.pg_migrate import status
    from copines.store.postgres import plain_url

    url = get_settings().resolved_database_url
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        click.echo("DATABASE_URL is not a Postgres URL: the SQLite store migrates itself on open")
        return
    try:
        if show:
            for name, applied in asyncio.run(status(plain_url(url))):
                click.echo(f"{'applied' if applied else 'pending'}  {name}")
            return
        applied = asyncio.run(run_migrations(plain_url(url)))
    except CopinesError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a connection error: say which, never the URL (it holds a password)
        click.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0]}", err=True)
        sys.exit(2)
    if applied:
        for name in applied:
            click.echo(f"applied  {name}")
    else:
        click.echo("the schema is up to date")
