"""The production store: Postgres + pgvector (Supabase or any Postgres >= 15), through a pool.

Knowledge lives here; conversations, escalations and feedback in `postgres_conversations.py`.
Every statement is parameterised and no server-side prepared statement is kept
(`prepare_threshold=None`), and settings only change with `SET LOCAL`, so the store works through
a transaction-mode pooler (Supabase's on port 6543, PgBouncer).

Round trips are what a visitor waits for (each is a wake-up of both processes on a busy machine):
pooled connections are in autocommit, so a single statement is one round trip (no BEGIN, no
COMMIT); only writes of several statements open a transaction (`_tx`); a search sends its
`SET LOCAL` and its query in one pipeline, one round trip (`_search`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg.vector import register_vector_info
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from copines.config import Settings
from copines.errors import ConfigError, InputError, NotFoundError, StoreBusyError
from copines.experts import SHARED
from copines.store.base import ChunkRecord, DocumentRecord, Passage, Store, StoredChunk
from copines.store.pg_migrate import apply_migrations, parse_version
from copines.store.postgres_conversations import ConversationsMixin
from copines.store.postgres_keywords import KeywordSearchMixin
from copines.store.postgres_sources import SourcesMixin
from copines.store.postgres_vectors import VectorIndexesMixin
from copines.store.sqlite import mismatch_error

_EMBEDDER_LOCK = 7_366_813_002  # serialises the first ingest (it types the vector column)


def plain_url(url: str) -> str:
    """The libpq form of a DATABASE_URL (SQLAlchemy-style prefixes removed)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class PostgresStore(
    VectorIndexesMixin, KeywordSearchMixin, ConversationsMixin, SourcesMixin, Store
):
    """Postgres + pgvector behind the Store interface (psycopg 3, async pool)."""

    def __init__(self, url: str, settings: Settings):
        self.url = plain_url(url)
        self.settings = settings
        self._pool: AsyncConnectionPool | None = None
        self._vector_info: TypeInfo | None = None
        self.pgvector_version: tuple[int, ...] = ()
        self.embedder_id: str | None = None
        self.dim: int | None = None
        self._owner_counts: dict[str, int] = {}
        self._owner_counts_at = 0.0

    # Plumbing ------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await AsyncConnection.connect(
                self.url,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=max(1, int(self.settings.pg_connect_timeout)),
            )
        except psycopg.OperationalError as exc:
            raise ConfigError(
                f"cannot connect to Postgres ({str(exc).strip().splitlines()[0]}); "
                "check DATABASE_URL"
            ) from exc
        async with conn:
            await apply_migrations(conn)
            row = await (
                await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).fetchone()
            self.pgvector_version = parse_version(row[0])
            self._vector_info = await TypeInfo.fetch(conn, "vector")
        pool = AsyncConnectionPool(
            self.url,
            min_size=self.settings.pg_pool_min_size,
            max_size=max(self.settings.pg_pool_max_size, self.settings.pg_pool_min_size),
            kwargs={
                "prepare_threshold": None,  # nothing prepared: transaction poolers welcome
                "autocommit": True,  # one statement, one round trip; `_tx` for several
                "row_factory": dict_row,
                "connect_timeout": max(1, int(self.settings.pg_connect_timeout)),
            },
            configure=self._configure,
            timeout=self.settings.pg_connect_timeout,
            open=False,
            name="copines",
        )
        await pool.open(wait=True, timeout=self.settings.pg_connect_timeout)
        self._pool = pool
        await self.get_embedder_id()
        if self.dim is not None:  # owners given by plain SQL since: index them too
            async with self._tx() as conn:
                await self.build_vector_indexes(conn)

    async def _configure(self, conn: AsyncConnection) -> None:
        # The vector type's OID was read once at open: no round trip per new connection.
        register_vector_info(conn, self._vector_info)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in autocommit: each statement is its own transaction."""
        if self._pool is None:
            raise RuntimeError("store is not open; call `await store.open()` first")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreBusyError(
                f"all {self._pool.max_size} Postgres connections stayed busy for "
                f"{self._pool.timeout:.0f} s; retry shortly or raise COPINES_PG_POOL_MAX_SIZE"
            ) from exc
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreBusyError(
                f"a Postgres lock stayed held for more than {self.settings.pg_lock_timeout:g} s; "
                "retry shortly, or raise COPINES_PG_LOCK_TIMEOUT"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" not in str(exc):
                raise
            raise StoreBusyError(
                "a Postgres statement ran for more than "
                f"{self.settings.pg_statement_timeout:g} s and was cancelled; retry shortly, "
                "or raise COPINES_PG_STATEMENT_TIMEOUT"
            ) from exc

    @property
    def _limits(self) -> dict[str, str]:
        """statement_timeout and lock_timeout, in ms, as set on each transaction."""
        s = self.settings
        return {
            "statement_timeout": str(max(0, round(s.pg_statement_timeout * 1000))),
            "lock_timeout": str(max(0, round(s.pg_lock_timeout * 1000))),
        }

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection inside one transaction (committed on exit, rolled back on error),
        under the statement and lock timeouts."""
        async with self._conn() as conn, conn.transaction():
            await self._set_local(conn, self._limits)
            yield conn

    @staticmethod
    async def _set_local(conn: AsyncConnection, settings: dict[str, str]) -> None:
        """SET LOCAL each of `settings`, in one statement."""
        items = list(settings.items())
        await conn.execute(
            sql.SQL("SELECT {}").format(
                sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in items)
            ),
            [v for item in items for v in item],
        )

    async def _search(
        self, settings: dict[str, str], query: sql.Composable, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """`settings` (as SET LOCAL, after the timeouts) and `query` in one round trip.

        Both are sent in one pipeline, closed by a single Sync: Postgres runs them as one
        implicit transaction, so the settings hold for the query and end with it (a
        transaction-mode pooler sees one transaction). The query is an unnamed statement,
        planned for these very values (the owner's partial index); its vector travels in
        binary. Four round trips before: BEGIN, SET, the query, COMMIT. (Binding on this side
        into a two-statement message did the same in one round trip, but rendering a 512-d
        vector as text took 0.6 ms of this process per query.)
        """
        items = list({**self._limits, **settings}.items())
        sets = sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in items)
        )
        async with self._conn() as conn, conn.pipeline():
            await conn.execute(sets, [v for item in items for v in item])
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def ping(self) -> bool:
        try:
            async with self._conn() as conn:
                row = await (await conn.execute("SELECT 1 AS ok")).fetchone()
                return row["ok"] == 1
        except Exception:
            return False

    # Knowledge -----------------------------------------------------------------------
    async def _read_meta(self, conn: AsyncConnection) -> None:
        rows = await (
            await conn.execute(
                "SELECT key, value FROM copines.meta WHERE key IN ('embedder', 'dim')"
            )
        ).fetchall()
        meta = {r["key"]: r["value"] for r in rows}
        self.embedder_id = meta.get("embedder")
        self.dim = int(meta["dim"]) if "dim" in meta else None

    async def get_embedder_id(self) -> str | None:
        async with self._conn() as conn:
            await self._read_meta(conn)
        return self.embedder_id

    _DOC_SELECT = (
        "SELECT d.*, (SELECT count(*) FROM copines.document_chunks c "
        "WHERE c.document_id = d.id) AS chunks FROM copines.documents d"
    )

    @staticmethod
    def _document(row: dict[str, Any]) -> DocumentRecord:
        return DocumentRecord(
            id=row["id"],
            filename=row["filename"],
            title=row["title"],
            owner=row["agent_owner"],
            owner_reason=row["owner_reason"],
            tags=list(row["tags"]),
            category=row["category"],
            priority=row["priority"],
            content_hash=row["content_hash"],
            source_path=row["source_path"],
            url=row["url"],
            chunks=row["chunks"],
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
        )

    async def get_document(self, filename: str) -> DocumentRecord | None:
        async with self._conn() as conn:
            cur = await conn.execute(self._DOC_SELECT + " WHERE d.filename = %s", (filename,))
            row = await cur.fetchone()
        return self._document(row) if row else None

    async def list_documents(self, owner: str | None = None) -> list[DocumentRecord]:
        async with self._conn() as conn:
            if owner is None:
                cur = await conn.execute(self._DOC_SELECT + " ORDER BY d.filename")
            else:
                cur = await conn.execute(
                    self._DOC_SELECT + " WHERE d.agent_owner = %s ORDER BY d.filename", (owner,)
                )
            rows = await cur.fetchall()
        return [self._document(r) for r in rows]

    async def _claim_embedder(
        self, conn: AsyncConnection, embedder_id: str, dim: int | None
    ) -> None:
        """Check the store's embedder; on the first ingest, type the vector column and index it."""
        query = "SELECT value FROM copines.meta WHERE key = 'embedder'"
        row = await (await conn.execute(query + " FOR SHARE")).fetchone()
        if row is None:
            await self.wait_unlimited(conn)  # another first ingest may be building its index
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_EMBEDDER_LOCK,))
            row = await (await conn.execute(query)).fetchone()  # a concurrent first ingest?
        if row is not None:
            if row["value"] != embedder_id:
                raise mismatch_error(row["value"], embedder_id)
            return
        if not dim:
            return  # no vector yet: the first document with chunks decides the size
        await self._type_vectors(conn, dim)
        await conn.execute(
            "INSERT INTO copines.meta (key, value) VALUES ('embedder', %s), ('dim', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (embedder_id, str(dim)),
        )

    async def save_document(
        self,
        document: DocumentRecord,
        chunks: list[ChunkRecord],
        embeddings: np.ndarray,
        embedder_id: str,
    ) -> int:
        try:
            return await self._save_document(document, chunks, embeddings, embedder_id)
        except psycopg.errors.CheckViolation as exc:
            raise InputError(f"unknown owner '{document.owner}' (refused by the database)") from exc

    async def _save_document(
        self,
        document: DocumentRecord,
        chunks: list[ChunkRecord],
        embeddings: np.ndarray,
        embedder_id: str,
    ) -> int:
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk is required")
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 and len(vectors) else None
        async with self._tx() as conn:
            if chunks:
                await self.lock_for_new_index(conn, document.owner)
            await self._claim_embedder(conn, embedder_id, dim)
            await self._read_meta(conn)
            if dim is not None and self.dim is not None and dim != self.dim:
                raise mismatch_error(self.embedder_id or "?", f"an embedder of {dim} dims")
            row = await (
                await conn.execute(
                    "INSERT INTO copines.documents AS d (filename, title, agent_owner, "
                    "owner_reason, tags, category, priority, content_hash, source_path, url, "
                    "created_at, updated_at) "  # one instant for both (two defaults: two)
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    "statement_timestamp(), statement_timestamp()) "
                    "ON CONFLICT (filename) DO UPDATE SET title = excluded.title, "
                    "agent_owner = excluded.agent_owner, owner_reason = excluded.owner_reason, "
                    "tags = excluded.tags, category = excluded.category, "
                    "priority = excluded.priority, content_hash = excluded.content_hash, "
                    "source_path = excluded.source_path, url = excluded.url, "
                    "updated_at = clock_timestamp() "
                    "RETURNING d.id",
                    (
                        document.filename,
                        document.title,
                        document.owner,
                        document.owner_reason,
                        list(document.tags),
                        document.category,
                        document.priority,
                        document.content_hash,
                        document.source_path,
                        document.url,
                    ),
                )
            ).fetchone()
            doc_id = int(row["id"])
            await conn.execute(
                "DELETE FROM copines.document_chunks WHERE document_id = %s", (doc_id,)
            )
            if chunks:
                await self.build_vector_indexes(conn, [document.owner])
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO copines.document_chunks (document_id, agent_owner, position, "
                        "heading_path, content, keywords, embedding, embedder) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (
                                doc_id,
                                document.owner,
                                chunk.position,
                                chunk.heading_path,
                                chunk.text,
                                list(chunk.keywords),
                                vectors[i],
                                embedder_id,
                            )
                            for i, chunk in enumerate(chunks)
                        ],
                    )
        self._owner_counts_at = 0.0
        return doc_id

    async def register_owners(self, owners: list[str]) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO copines.owners (id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (list(owners),),
            )

    async def set_owner(self, filename: str, owner: str, reason: str) -> None:
        try:
            await self._set_owner(filename, owner, reason)
        except psycopg.errors.CheckViolation as exc:
            raise InputError(f"unknown owner '{owner}' (refused by the database)") from exc

    async def _set_owner(self, filename: str, owner: str, reason: str) -> None:
        async with self._tx() as conn:
            if self.dim is not None:
                await self.lock_for_new_index(conn, owner)
            cur = await conn.execute(
                "UPDATE copines.documents SET agent_owner = %s, owner_reason = %s, "
                "updated_at = clock_timestamp() WHERE filename = %s",
                (owner, reason, filename),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no document named '{filename}'; see `copines documents`")
            if self.dim is not None:
                await self.build_vector_indexes(conn, [owner])
        self._owner_counts_at = 0.0

    async def delete_document(self, filename: str) -> None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "DELETE FROM copines.documents WHERE filename = %s", (filename,)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no document named '{filename}'; see `copines documents`")
        self._owner_counts_at = 0.0

    async def all_chunks(self) -> list[StoredChunk]:
        async with self._conn() as conn:
            rows = await (
                await conn.execute(
                    "SELECT c.id, c.content, c.heading_path, d.title "
                    "FROM copines.document_chunks c "
                    "JOIN copines.documents d ON d.id = c.document_id ORDER BY c.id"
                )
            ).fetchall()
        return [StoredChunk(r["id"], r["content"], r["heading_path"], r["title"]) for r in rows]

    async def replace_embeddings(
        self, ids: list[int], embeddings: np.ndarray, embedder_id: str
    ) -> None:
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        dim = int(vectors.shape[1]) if vectors.ndim == 2 and len(vectors) else self.dim or 0
        async with self._tx() as conn:
            await self.wait_unlimited(conn)  # rewrites every vector, then rebuilds the indexes
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_EMBEDDER_LOCK,))
            # The new vectors go to a new column of their size; the old one is dropped at the
            # end (its indexes with it), and the indexes are built once, in bulk (faster than
            # updating the graphs row by row).
            await conn.execute(
                sql.SQL(
                    "ALTER TABLE copines.document_chunks ADD COLUMN embedding_new vector({dim})"
                ).format(dim=sql.Literal(int(dim)))
            )
            await self._store_inline(conn, "embedding_new")
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE copines.document_chunks SET embedding_new = %s, embedder = %s "
                    "WHERE id = %s",
                    [(vectors[i], embedder_id, cid) for i, cid in enumerate(ids)],
                )
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM copines.document_chunks "
                    "WHERE embedding_new IS NULL OR embedder <> %s",
                    (embedder_id,),
                )
            ).fetchone()
            if row["n"]:
                raise RuntimeError(f"{row['n']} chunks changed during reindex; run it again")
            await conn.execute("ALTER TABLE copines.document_chunks DROP COLUMN embedding")
            await conn.execute(
                "ALTER TABLE copines.document_chunks RENAME COLUMN embedding_new TO embedding"
            )
            await conn.execute(
                "ALTER TABLE copines.document_chunks ALTER COLUMN embedding SET NOT NULL"
            )
            await self.build_vector_indexes(conn)
            await conn.execute(
                "INSERT INTO copines.meta (key, value) VALUES ('embedder', %s), ('dim', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (embedder_id, str(dim)),
            )
        self.embedder_id, self.dim = embedder_id, dim

    async def get_passages(
        self, expert: str, chunk_ids: list[int], vector: np.ndarray | None = None
    ) -> list[Passage]:
        if not chunk_ids:
            return []
        select = (
            "SELECT c.id, c.document_id, d.filename, d.title, d.agent_owner, c.heading_path, "
            "c.content, d.url, {score} AS dense FROM copines.document_chunks c "
            "JOIN copines.documents d ON d.id = c.document_id "
            "WHERE c.id = ANY(%(ids)s) AND d.agent_owner IN (%(expert)s, %(shared)s)"
        )
        params: dict[str, Any] = {"ids": list(chunk_ids), "expert": expert, "shared": SHARED}
        if vector is not None:
            await self._check_dim(vector)
            query = select.format(score="1 - (c.embedding <=> %(vector)s)")
            params["vector"] = np.asarray(vector, dtype=np.float32)
        else:
            query = select.format(score="0.0::float8")
        async with self._conn() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        by_id = {
            r["id"]: Passage(
                chunk_id=r["id"],
                document_id=r["document_id"],
                filename=r["filename"],
                title=r["title"],
                owner=r["agent_owner"],
                heading_path=r["heading_path"],
                text=r["content"],
                url=r["url"],
                dense_score=float(r["dense"]),
            )
            for r in rows
        }
        return [by_id[i] for i in chunk_ids if i in by_id]

    async def count_chunks(self) -> int:
        async with self._conn() as conn:
            row = await (
                await conn.execute("SELECT count(*) AS n FROM copines.document_chunks")
            ).fetchone()
        return int(row["n"])
