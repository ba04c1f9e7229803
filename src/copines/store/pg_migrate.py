"""Postgres schema: versioned .sql files in pg_migrations/, recorded in copines.schema_migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import AsyncConnection, sql

from copines.errors import ConfigError

SCHEMA = "copines"
MIN_PGVECTOR = (0, 5, 0)  # HNSW arrived in pgvector 0.5.0
# One advisory lock for every process that migrates: workers starting together take turns.
# A transaction-level lock, so it also works through a transaction-mode pooler.
_LOCK_KEY = 7_366_813_001

NO_PGVECTOR = (
    "pgvector is not available on this Postgres server: on Supabase, enable the `vector` "
    "extension (Database > Extensions); on your own server, install pgvector >= 0.5 (the "
    "postgresql-<version>-pgvector package, or the pgvector/pgvector Docker image)"
)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The bundled migrations, in version order."""
    found = []
    folder = resources.files("copines.store") / "pg_migrations"
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(match[1], match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


async def ensure_pgvector(conn: AsyncConnection) -> tuple[int, ...]:
    """Create the vector extension when missing; returns its version. Raises ConfigError."""
    row = await (
        await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).fetchone()
    if row is None:
        try:
            async with conn.transaction():
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile) as exc:
            raise ConfigError(NO_PGVECTOR) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(
                "the vector extension is missing and this role may not create it: "
                "run `CREATE EXTENSION vector;` as an administrator (on Supabase: "
                "Database > Extensions > vector)"
            ) from exc
        except psycopg.errors.UniqueViolation:
            pass  # another process created it at the same moment
        row = await (
            await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).fetchone()
    version = parse_version(row[0])
    if version < MIN_PGVECTOR:
        raise ConfigError(
            f"pgvector {row[0]} is too old (HNSW needs >= 0.5.0): "
            "run `ALTER EXTENSION vector UPDATE;` after upgrading the package"
        )
    return version


async def applied_versions(conn: AsyncConnection) -> set[str]:
    """Versions already recorded (empty when the schema is not there yet)."""
    row = await (
        await conn.execute("SELECT to_regclass('copines.schema_migrations') IS NOT NULL")
    ).fetchone()
    if not row[0]:
        return set()
    rows = await (await conn.execute("SELECT version FROM copines.schema_migrations")).fetchall()
    return {r[0] for r in rows}


async def _bootstrap(conn: AsyncConnection) -> None:
    """Create the schema and the migrations table, whoever comes first."""
    for attempt in range(3):
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA))
                )
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS copines.schema_migrations ("
                    "version text PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            # Created by another process in the meantime; an advisory lock does not refresh
            # the catalog cache, a new transaction does.
            if attempt == 2:
                raise


async def apply_migrations(conn: AsyncConnection) -> list[str]:
    """Apply the pending migrations, each in its own transaction; returns the applied names.

    `conn` must be in autocommit mode; the transactions are explicit here.
    """
    await ensure_pgvector(conn)
    if {m.version for m in migrations()} <= await applied_versions(conn):
        return []
    await _bootstrap(conn)
    applied = []
    for migration in migrations():
        async with conn.transaction():
            # The table lock makes processes that start together take turns (and, unlike an
            # advisory lock, refreshes what each sees of the catalog).
            await conn.execute("LOCK TABLE copines.schema_migrations IN SHARE ROW EXCLUSIVE MODE")
            done = await (
                await conn.execute(
                    "SELECT 1 FROM copines.schema_migrations WHERE version = %s",
                    (migration.version,),
                )
            ).fetchone()
            if done:
                continue
            await conn.execute(migration.sql)  # no parameters: several statements at once
            await conn.execute(
                "INSERT INTO copines.schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            await conn.execute(
                sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(SCHEMA))
            )
        applied.append(f"{migration.version}_{migration.name}")
    return applied


async def migrate(url: str) -> list[str]:
    """Connect to `url`, apply pending migrations, return their names."""
    async with await AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        return await apply_migrations(conn)


async def status(url: str) -> list[tuple[str, bool]]:
    """Every bundled migration with whether it was applied."""
    async with await AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) as conn:
        done = await applied_versions(conn)
    return [(f"{m.version}_{m.name}", m.version in done) for m in migrations()]
