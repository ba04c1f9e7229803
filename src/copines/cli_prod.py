"""Production commands: `copines migrate` applies the Postgres migrations."""

from __future__ import annotations

import asyncio
import sys

import click

from copines.config import get_settings
from copines.errors import CopinesError


def register(main: click.Group) -> None:
    main.add_command(migrate)
    main.add_command(purge)


@click.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="keep conversations active within this many days (default: COPINES_RETENTION_DAYS)",
)
def purge(days: int | None) -> None:
    """Delete the conversations idle for longer than the retention period (with their messages,
    hand-offs, feedback and email). `copines serve` runs it every day on its own."""
    from copines.privacy import purge as run_purge
    from copines.store import create_store

    settings = get_settings()
    if days is not None:
        settings = settings.model_copy(update={"retention_days": days})

    async def job() -> int:
        async with create_store(settings) as store:
            return await run_purge(store, settings)

    try:
        deleted = asyncio.run(job())
    except CopinesError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(
        f"{deleted} conversation{'s' if deleted != 1 else ''} older than "
        f"{settings.retention_days} days deleted"
    )


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
