"""The vector column and its HNSW indexes, one per owner (mixed into PostgresStore)."""

from __future__ import annotations

import hashlib
import re

import psycopg
from psycopg import AsyncConnection, sql

from copines.config import Settings

# Serialises the creation of owners' indexes: CREATE INDEX holds a share lock on the chunks until
# commit, which blocks other transactions' inserts; two ingests each creating an index and then
# inserting would wait on each other (a deadlock, seen with two files ingested at once).
_INDEX_LOCK = 7_366_813_003


class VectorIndexesMixin:
    """Sizing the `embedding` column and keeping one partial HNSW index per owner."""

    settings: Settings

    async def _type_vectors(self, conn: AsyncConnection, dim: int) -> None:
        """On the first ingest: make the column vector(dim), stored inline."""
        await conn.execute(
            sql.SQL(
                "ALTER TABLE copines.document_chunks ALTER COLUMN embedding TYPE vector({dim}) "
                "USING embedding::vector({dim})"
            ).format(dim=sql.Literal(int(dim)))
        )
        await self._store_inline(conn, "embedding")

    @staticmethod
    async def _store_inline(conn: AsyncConnection, column: str) -> None:
        # pgvector's default (EXTERNAL) moves a 512-d vector (2 kB) out of the row into TOAST:
        # an exact scan then pays one TOAST fetch per row (10 ms for 3k chunks, measured).
        await conn.execute(
            sql.SQL("ALTER TABLE copines.document_chunks ALTER COLUMN {} SET STORAGE PLAIN").format(
                sql.Identifier(column)
            )
        )

    @staticmethod
    async def wait_unlimited(conn: AsyncConnection) -> None:
        """No statement or lock timeout for the rest of this transaction: it builds an index,
        or waits for another process's build (a minute at 100k chunks)."""
        await conn.execute(
            "SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true)"
        )

    @staticmethod
    def vector_index_name(owner: str) -> str:
        """The name of an owner's HNSW index (the owner itself when it is a plain id)."""
        if re.fullmatch(r"[a-z0-9_]{1,30}", owner):
            return f"document_chunks_embedding_{owner}"
        return f"document_chunks_embedding_{hashlib.sha1(owner.encode()).hexdigest()[:12]}"

    async def lock_for_new_index(self, conn: AsyncConnection, owner: str) -> None:
        """Before any change in a transaction that may create `owner`'s index: wait for the
        other index creators (a transaction-level lock, so poolers are fine)."""
        row = await (
            await conn.execute(
                "SELECT to_regclass(%s) IS NULL AS missing",
                (f"copines.{self.vector_index_name(owner)}",),
            )
        ).fetchone()
        if row["missing"]:
            await self.wait_unlimited(conn)
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INDEX_LOCK,))

    @staticmethod
    async def vector_indexes(conn: AsyncConnection) -> list[str]:
        rows = await (
            await conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'copines' "
                "AND tablename = 'document_chunks' AND indexdef LIKE '%%USING hnsw%%'"
            )
        ).fetchall()
        return [r["indexname"] for r in rows]

    async def build_vector_indexes(
        self, conn: AsyncConnection, owners: list[str] | None = None
    ) -> list[str]:
        """Create the missing HNSW indexes (cosine), one per owner (every owner present when
        `owners` is None); returns the names created. Needs the column typed (a first ingest)."""
        if owners is None:
            rows = await (
                await conn.execute("SELECT DISTINCT agent_owner FROM copines.document_chunks")
            ).fetchall()
            owners = [r["agent_owner"] for r in rows]
        existing = set(await self.vector_indexes(conn))
        missing = [o for o in dict.fromkeys(owners) if self.vector_index_name(o) not in existing]
        if not missing:
            return []
        await self.wait_unlimited(conn)
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INDEX_LOCK,))
        existing = set(await self.vector_indexes(conn))  # created while this one waited?
        missing = [o for o in missing if self.vector_index_name(o) not in existing]
        if not missing:
            return []
        s = self.settings
        await conn.execute(
            "SELECT set_config('maintenance_work_mem', %s, true)", (s.pg_maintenance_work_mem,)
        )
        created = []
        for owner in missing:
            name = self.vector_index_name(owner)
            try:
                async with conn.transaction():  # a savepoint: another process may win the race
                    await conn.execute(
                        sql.SQL(
                            "CREATE INDEX IF NOT EXISTS {name} ON copines.document_chunks "
                            "USING hnsw (embedding vector_cosine_ops) "
                            "WITH (m = {m}, ef_construction = {ef}) WHERE agent_owner = {owner}"
                        ).format(
                            name=sql.Identifier(name),
                            m=sql.Literal(int(s.pg_hnsw_m)),
                            ef=sql.Literal(int(s.pg_hnsw_ef_construction)),
                            owner=sql.Literal(owner),
                        )
                    )
                created.append(name)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                continue
        return created
