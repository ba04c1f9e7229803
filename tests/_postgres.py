"""Postgres for the tests: DATABASE_URL when set, else one pgserver (Postgres 16 + pgvector)
started in a temporary folder for the whole session and stopped at exit."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

_server = None
_folder: Path | None = None


def _stop() -> None:
    global _server
    if _server is not None:
        try:
            _server.cleanup()
        finally:
            _server = None
            if _folder is not None:
                shutil.rmtree(_folder, ignore_errors=True)


def postgres_url(external_url: str | None = None) -> str:
    """The URL of a server the tests may create databases on."""
    global _server, _folder
    if external_url:
        return external_url
    if _server is None:
        import pgserver

        _folder = Path(tempfile.mkdtemp(prefix="copines-pg-"))
        _folder.chmod(0o755)  # as root, pgserver runs Postgres as another user
        _server = pgserver.get_server(_folder / "data", cleanup_mode="stop")
        atexit.register(_stop)
    return _server.get_uri()


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextmanager
def fresh_database(url: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server of `url` (empty, or a copy of the database `template`,
    which must have no open connection), dropped afterwards; yields its URL."""
    name = f"copines_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(create)
    try:
        yield with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
