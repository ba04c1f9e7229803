"""The vector column, its HNSW indexes (one per owner) and the dense search (mixed into
PostgresStore)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from typing import Any

import numpy as np
import psycopg
from psycopg import AsyncConnection, sql

from copines.config import Settings
from copines.experts import SHARED
from copines.store.sqlite import mismatch_error

# Serialises the creation of owners' indexes: CREATE INDEX holds a share lock on the chunks until
# commit, which blocks other transactions' inserts; two ingests each creating an index and then
# inserting would wait on each other (a deadlock, seen with two files ingested at once).
_INDEX_LOCK = 7_366_813_003
_OWNER_COUNTS_TTL = 30.0  # seconds a process trusts its chunk counts per owner
# One owner's nearest chunks, through her HNSW index: planned for the owner's value (an unnamed
# statement, see PostgresStore._search), so the planner takes her partial index.
WALK = (
    "SELECT c.id, 1 - (c.embedding <=> %(vector)s::vector) AS similarity "
    "FROM copines.document_chunks c WHERE c.agent_owner = %(owner)s "
    "ORDER BY c.embedding <=> %(vector)s::vector LIMIT %(limit)s"
)
_MAX_EF_SEARCH = 1000


class VectorIndexesMixin:
    """Sizing the `embedding` column, keeping one partial HNSW index per owner, and searching
    them; `self._conn()` and `self._search()` come from PostgresStore."""

    settings: Settings
    dim: int | None
    embedder_id: str | None
    _owner_counts: dict[str, int]
    _owner_counts_at: float

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

    # Search --------------------------------------------------------------------------
    async def owner_counts(self) -> dict[str, int]:
        """Chunks per owner, re-read at most every 30 s (they only steer the search plan)."""
        if time.monotonic() - self._owner_counts_at > _OWNER_COUNTS_TTL:
            async with self._conn() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT agent_owner, count(*) AS n FROM copines.document_chunks "
                        "GROUP BY agent_owner"
                    )
                ).fetchall()
            self._owner_counts = {r["agent_owner"]: r["n"] for r in rows}
            self._owner_counts_at = time.monotonic()
        return self._owner_counts

    async def search_plan(self, expert: str) -> tuple[bool, int]:
        """(exact?, ef_search) for an expert: exact while her chunks and the shared ones are
        under the cutoff, else through the owners' HNSW indexes."""
        counts = await self.owner_counts()
        mine = counts.get(expert, 0) + counts.get(SHARED, 0)
        if mine <= self.settings.pg_exact_search_below:
            return True, 0
        return False, max(1, min(self.settings.pg_hnsw_ef_search, _MAX_EF_SEARCH))

    async def _check_dim(self, vector: np.ndarray) -> None:
        if self.dim is not None and len(vector) != self.dim:
            await self.get_embedder_id()  # another process may have reindexed meanwhile
        if self.dim is not None and len(vector) != self.dim:
            raise mismatch_error(self.embedder_id or "?", f"an embedder of {len(vector)} dims")

    async def dense_search(
        self, expert: str, vector: np.ndarray, limit: int, threshold: float
    ) -> list[tuple[int, float]]:
        await self._check_dim(vector)
        exact, ef_search = await self.search_plan(expert)
        if exact:
            return await self.match_chunks(expert, vector, limit, threshold, exact=True)
        return await self.walk_owner_indexes(expert, vector, limit, threshold, ef_search)

    async def walk_owner_indexes(
        self, expert: str, vector: np.ndarray, limit: int, threshold: float, ef_search: int
    ) -> list[tuple[int, float]]:
        """What copines.match_chunks() returns through the HNSW indexes, with the expert's and
        the shared graph walked at once, on two connections: the wait is the longer walk
        rather than both (the two server processes run on two cores)."""
        settings = {"jit": "off", "hnsw.ef_search": str(int(ef_search))}
        query = sql.SQL(WALK)
        v = np.asarray(vector, dtype=np.float32)
        owners = list(dict.fromkeys((expert, SHARED)))
        walks = await asyncio.gather(
            *(
                self._vector_rows(settings, query, {"vector": v, "owner": o, "limit": int(limit)})
                for o in owners
            )
        )
        found = [
            (int(r["id"]), float(r["similarity"]))
            for rows in walks
            for r in rows
            if r["similarity"] >= threshold
        ]
        return sorted(found, key=lambda hit: -hit[1])[:limit]

    async def _vector_rows(
        self, settings: dict[str, str], query: sql.Composable, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """`_search`, with a vector of the wrong size reported as an embedder mismatch."""
        try:
            return await self._search(settings, query, params)
        except psycopg.errors.DataException as exc:
            if "dimensions" in str(exc):
                raise mismatch_error(
                    self.embedder_id or "?", f"an embedder of {len(params['vector'])} dims"
                ) from exc
            raise

    async def match_chunks(
        self,
        expert: str,
        vector: np.ndarray,
        limit: int,
        threshold: float,
        exact: bool,
        ef_search: int = 0,
    ) -> list[tuple[int, float]]:
        """copines.match_chunks(): exactly (no index scan), or through the expert's and the
        shared HNSW indexes at `ef_search`."""
        # JIT compiling (on by default where Postgres has it, Supabase included) costs more than
        # these short queries: off, for this transaction only. Each owner has her own index, so
        # no filter thins what the graph returns (pgvector 0.8's iterative scans are not needed).
        settings = {"jit": "off"}
        if exact:
            settings["enable_indexscan"] = "off"
        else:
            settings["hnsw.ef_search"] = str(int(ef_search))
        query = sql.SQL(
            "SELECT id, similarity FROM copines.match_chunks("
            "%(vector)s::vector, %(expert)s, %(threshold)s, %(limit)s)"
        )
        params = {
            "vector": np.asarray(vector, dtype=np.float32),
            "expert": expert,
            "threshold": float(threshold),
            "limit": int(limit),
        }
        rows = await self._vector_rows(settings, query, params)
        return [(int(r["id"]), float(r["similarity"])) for r in rows]
