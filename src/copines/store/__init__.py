"""Storage backends behind one interface; `open_store` picks one from DATABASE_URL."""

from __future__ import annotations

from copines.config import Settings
from copines.errors import ConfigError
from copines.store.base import Store


def create_store(settings: Settings) -> Store:
    """The store for `settings.resolved_database_url` (not yet opened)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        from copines.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), settings.sqlite_busy_timeout_ms)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        try:
            from copines.store.postgres import PostgresStore
        except ImportError as exc:  # the backend lands with the production issue
            raise ConfigError(f"the Postgres store is not available here ({exc})") from exc
        return PostgresStore(url, settings)
    raise ConfigError(
        f"DATABASE_URL must start with sqlite:/// or postgresql:// (got '{url.split(':')[0]}:...')"
    )
