"""Postgres only: migrations, the schema's isolation from Supabase's `anon` role, and pooler
compatibility (no prepared statement, no session state left on a connection)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from copines.errors import ConfigError, StoreBusyError
from copines.store.base import ChunkRecord, Conversation, DocumentRecord, Message
from copines.store.pg_migrate import migrate, migrations
from copines.store.postgres import PostgresStore
from tests.conftest import make_settings, postgres_url_or_skip

pytestmark = pytest.mark.postgres

TABLES = {
    "meta",
    "documents",
    "document_chunks",
    "conversations",
    "messages",
    "escalations",
    "sources",
    "source_items",
    "feedback",
    "schema_migrations",
    "owners",
}


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests._postgres import fresh_database

    with fresh_database(postgres_url_or_skip()) as url:
        yield url


def _tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def test_migrations_run_once_and_are_recorded(pg_url: str) -> None:
    names = [f"{m.version}_{m.name}" for m in migrations()]
    assert await migrate(pg_url) == names
    assert await migrate(pg_url) == []
    assert _tables(pg_url, "copines") == TABLES
    assert _tables(pg_url, "public") == set()  # nothing Supabase would expose
    with psycopg.connect(pg_url) as conn:
        recorded = conn.execute(
            "SELECT version || '_' || name FROM copines.schema_migrations ORDER BY version"
        ).fetchall()
        functions = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_depend e "
            "WHERE e.objid = p.oid AND e.deptype = 'e')"  # pgvector's own functions aside
        ).fetchall()
    assert [r[0] for r in recorded] == names
    assert functions == []


async def test_workers_starting_together_migrate_once(pg_url: str) -> None:
    results = await asyncio.gather(*(migrate(pg_url) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(f"{m.version}_{m.name}" for m in migrations())


def test_migrate_command(pg_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPINES_")}
    env.update(DATABASE_URL=pg_url, COPINES_DATA_DIR=str(tmp_path))
    copines = Path(sys.executable).with_name("copines")  # the installed command
    command = [str(copines) if copines.exists() else "copines", "migrate"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_knowledge" in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "up to date" in again.stdout
    listed = subprocess.run(
        [*command, "--list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert "applied  0002_conversations" in listed.stdout
    assert pg_url.split("@")[0] not in first.stdout + first.stderr  # the URL is never echoed


def _plain_postgres_url() -> str:
    """The machine's plain Postgres (no pgvector), or skip."""
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.OperationalError:
        pytest.skip("no plain Postgres on 127.0.0.1:5432")
    if available:
        pytest.skip("the Postgres on 127.0.0.1:5432 has pgvector")
    return url


async def test_a_postgres_without_pgvector_says_how_to_fix_it(tmp_path: Path) -> None:
    from tests._postgres import fresh_database

    with fresh_database(_plain_postgres_url()) as url:
        store = PostgresStore(url, make_settings(tmp_path, database_url=url))
        with pytest.raises(ConfigError, match="pgvector"):
            await store.open()
        assert _tables(url, "copines") == set()


@pytest.fixture
def anon_role(pg_url: str) -> Iterator[str]:
    """A role like Supabase's `anon`: it may use the public schema, nothing else."""
    role = f"anon_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def _one_conversation(url: str, tmp_path: Path) -> None:
    store = PostgresStore(url, make_settings(tmp_path, database_url=url))
    await store.open()
    try:
        await store.create_conversation("c1", "hash")
        await store.add_message(Message("c1", "user", "Mon tunnel ne convertit pas"))
        vectors = _unit(1, 8, 0)
        await store.save_document(
            DocumentRecord("a.md", "A", "audrey", "h"), [ChunkRecord(0, "secret")], vectors, "e"
        )
    finally:
        await store.close()


def _as_role(url: str, role: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        return conn.execute(query).fetchall()


async def test_anon_reads_no_conversation(pg_url: str, anon_role: str, tmp_path: Path) -> None:
    await _one_conversation(pg_url, tmp_path)
    for table in ("conversations", "messages", "document_chunks"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as_role(pg_url, anon_role, f"SELECT * FROM copines.{table}")  # noqa: S608
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(pg_url, anon_role, "SELECT * FROM copines.match_chunks(NULL, 'audrey')")

    # Even after a careless grant (what Supabase does by default in `public`), row-level
    # security with no policy shows anon nothing.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ident = sql.Identifier(anon_role)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA copines TO {}").format(ident))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA copines TO {}").format(ident))
    for table in ("conversations", "messages", "escalations", "feedback", "document_chunks"):
        assert _as_role(pg_url, anon_role, f"SELECT * FROM copines.{table}") == []  # noqa: S608


async def test_no_prepared_statement_or_session_setting_outlives_a_transaction(
    pg_url: str, tmp_path: Path
) -> None:
    """What a transaction-mode pooler (Supabase's port 6543) needs: each transaction may land
    on another server connection, so nothing may be left on the one it used."""
    settings = make_settings(tmp_path, database_url=pg_url, pg_pool_min_size=1, pg_pool_max_size=1)
    store = PostgresStore(pg_url, settings)
    await store.open()
    try:
        vectors = _unit(40, 16, 1)
        for owner in ("audrey", "shared", "carole"):
            await store.save_document(
                DocumentRecord(f"{owner}.md", owner, owner, "h"),
                [ChunkRecord(i, f"texte {owner} {i}") for i in range(40)],
                vectors,
                "e",
            )
        await store.create_conversation("c1", "hash")
        for _ in range(8):  # past psycopg's default prepare threshold (5)
            await store.match_chunks("audrey", vectors[0], 20, 0.0, exact=False, ef_search=123)
            await store.match_chunks("audrey", vectors[0], 20, 0.0, exact=True)
            await store.dense_search("audrey", vectors[0], 20, 0.0)
            await store.keyword_search("audrey", ["texte"], 20)
            await store.add_message(Message("c1", "user", "bonjour"))
            await store.get_messages("c1", limit=5)
        async with store._pool.connection() as conn:  # the pool's only connection
            prepared = await (
                await conn.execute("SELECT count(*) AS n FROM pg_prepared_statements")
            ).fetchone()
            ef = await (await conn.execute("SHOW hnsw.ef_search")).fetchone()
            index_scan = await (await conn.execute("SHOW enable_indexscan")).fetchone()
            jit = await (await conn.execute("SHOW jit")).fetchone()
        assert prepared["n"] == 0
        assert ef["hnsw.ef_search"] == "40"  # pgvector's default: the SET LOCAL did not stay
        assert index_scan["enable_indexscan"] == "on"
        assert jit["jit"] == "on"  # turned off per search transaction only
        timeouts = await (
            await conn.execute(
                "SELECT current_setting('statement_timeout') AS s, "
                "current_setting('lock_timeout') AS l"
            )
        ).fetchone()
        assert timeouts == {"s": "0", "l": "0"}  # set per transaction, not on the connection
    finally:
        await store.close()


async def test_connection_errors_name_the_setting(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing"
    store = PostgresStore(url, make_settings(tmp_path, database_url=url, pg_connect_timeout=2))
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        await store.open()


def test_conversation_dataclass_roundtrip_types() -> None:
    # Guard the mixin's assumption that Conversation takes these fields positionally.
    assert [f for f in Conversation.__dataclass_fields__][:4] == [
        "id",
        "token_hash",
        "created_at",
        "updated_at",
    ]


async def test_documents_of_new_owners_saved_at_once_do_not_deadlock(
    pg_url: str, tmp_path: Path
) -> None:
    """Ingestion saves two files at once: each new owner's index is created while the other
    transaction inserts chunks (CREATE INDEX's share lock against their inserts)."""
    settings = make_settings(tmp_path, database_url=pg_url, pg_pool_max_size=4)
    store = PostgresStore(pg_url, settings)
    await store.open()
    try:
        vectors = _unit(30, 16, 2)
        owners = ["audrey", "carole", "shared", "audrey", "carole", "shared"]
        await asyncio.gather(
            *(
                store.save_document(
                    DocumentRecord(f"{owner}-{i}.md", owner, owner, "h"),
                    [ChunkRecord(j, f"texte {owner} {j}") for j in range(30)],
                    vectors,
                    "e",
                )
                for i, owner in enumerate(owners)
            )
        )
        async with store._conn() as conn:
            indexes = await store.vector_indexes(conn)
        assert len(indexes) == 3
        assert await store.count_chunks() == 180
    finally:
        await store.close()


async def test_a_long_statement_or_lock_wait_fails_with_the_setting_to_raise(
    pg_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, database_url=pg_url, pg_statement_timeout=0.6, pg_lock_timeout=0.2
    )
    store = PostgresStore(pg_url, settings)
    await store.open()
    try:
        with pytest.raises(StoreBusyError, match="COPINES_PG_STATEMENT_TIMEOUT"):
            await store._search({}, sql.SQL("SELECT pg_sleep(2)"), {})  # a search's path
        with pytest.raises(StoreBusyError, match="COPINES_PG_STATEMENT_TIMEOUT"):
            async with store._tx() as conn:  # a write transaction's path
                await conn.execute("SELECT pg_sleep(2)")
        for owner in ("audrey", "shared"):  # both indexes exist: a move builds none
            await store.save_document(
                DocumentRecord(f"{owner}.md", owner, owner, "h"),
                [ChunkRecord(0, "texte")],
                _unit(1, 16, 3),
                "e",
            )
        with psycopg.connect(pg_url) as other:  # holds the document's row until the end
            other.execute("SELECT 1 FROM copines.documents WHERE filename = 'audrey.md' FOR UPDATE")
            with pytest.raises(StoreBusyError, match="COPINES_PG_LOCK_TIMEOUT"):
                await store.set_owner("audrey.md", "shared", "test")
        await store.set_owner("audrey.md", "shared", "test")  # released: it goes through
        assert [d.filename for d in await store.list_documents("shared")] == [
            "audrey.md",
            "shared.md",
        ]
        assert await store.keyword_search("audrey", ["texte"], 5)  # the pool is still fine
    finally:
        await store.close()
