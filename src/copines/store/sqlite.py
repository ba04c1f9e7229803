"""The embedded store: one SQLite file in WAL mode, FTS5 keywords, exact numpy vectors."""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import numpy as np

from copines.errors import EmbedderMismatchError, NotFoundError, StoreBusyError
from copines.experts import SHARED
from copines.store.base import (
    REVOKED_END,
    REVOKED_PREFIX,
    ChunkRecord,
    DocumentRecord,
    Passage,
    Store,
    StoredChunk,
    rarest_within,
)
from copines.store.sqlite_conversations import SQLiteConversations, _dt, _now
from copines.store.sqlite_migrations import apply_migrations, owner_key
from copines.store.sqlite_sources import SQLiteSources
from copines.store.vectors import VectorIndex
from copines.text import fold

T = TypeVar("T")

# At most this many chunks, a knowledge read (keyword search, vector scan, passages) runs on
# the event loop's thread: there it costs 0.01-0.5 ms, while a trip to a worker thread and back
# costs about 0.15 ms of CPU by itself. Larger bases search off the loop, where the GIL-free
# parts (FTS5, numpy) can use another core.
INLINE_MAX_CHUNKS = 5000
# The write-ahead log is checkpointed every 1000 pages (4 MB) by the committing connection,
# its file cut back to JOURNAL_LIMIT_BYTES when it starts over; past LOG_BACKLOG_BYTES (a long
# reader held it), a write leaves the event loop and the database thread empties the log.
JOURNAL_LIMIT_BYTES = 8 * 1024 * 1024
LOG_BACKLOG_BYTES = 12 * 1024 * 1024

PASSAGES_SQL = (
    "SELECT c.id, c.document_id, d.filename, d.title, d.owner, c.heading_path, c.text, d.url "
    "FROM chunks c JOIN documents d ON d.id = c.document_id "
    "WHERE c.id IN (SELECT value FROM json_each(?))"
)


def mismatch_error(stored: str, wanted: str) -> EmbedderMismatchError:
    return EmbedderMismatchError(
        f"the knowledge base was embedded with '{stored}' but '{wanted}' is configured; "
        "run `copines reindex` to re-embed it (or configure the original embedder)"
    )


def fts_query(terms: list[str]) -> str:
    """An FTS5 expression matching any of the terms, each as a prefix."""
    return " OR ".join('"' + t.replace('"', "") + '"*' for t in terms if t)


# Keyword search ranks at most about this many matching rows (see `TermStats.select`):
# bm25 costs about 1 µs per row ranked. Measured at 10k chunks on the labelled questions
# (bench/retrieval.py corpus): 4000 rows gave a keyword p95 of 4.8 ms, 2500 gave 3.4 ms and
# kept 97% of the final top-3 passages (3000: 99%, 2000: 95%); on the sample knowledge
# (1.5k chunks) every budget from 600 up returns the same passages.
KEYWORD_ROW_BUDGET = 2500


class TermStats:
    """Document frequency of the full-text index's terms, for choosing what to search."""

    def __init__(self, version: str, terms: list[str], docs: list[int], total: int):
        self.version = version
        self.terms = terms
        self.cumulative = np.concatenate([[0], np.cumsum(np.asarray(docs, dtype=np.int64))])
        self.total = total

    def prefix_docs(self, prefix: str) -> int:
        """Chunks holding a term that starts with `prefix` (an upper bound: a chunk with
        two such terms counts twice)."""
        folded = fold(prefix)
        lo = bisect.bisect_left(self.terms, folded)
        hi = bisect.bisect_left(self.terms, folded + "\U0010ffff")
        return int(self.cumulative[hi] - self.cumulative[lo])

    def select(self, terms: list[str], budget: int) -> list[str]:
        """The terms present in the index, rarest first, while their rows fit in `budget`
        (the rarest one always). Below `budget` chunks in all, every present term is kept."""
        counted = [
            (docs, i, term)
            for i, term in enumerate(terms)
            if term and (docs := self.prefix_docs(term)) > 0
        ]
        return rarest_within(counted, budget)


class SQLiteStore(SQLiteConversations, SQLiteSources, Store):
    """A single SQLite file. Calls run on one database thread that owns the main connection,
    except short ones (a conversation's rows, a small base's searches), which run on the
    caller's thread through a connection of its own that never waits for a lock (see `_run`),
    and a large base's vector scan, which reads through a second connection (`dense_search`)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 5000):
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copines-sqlite")
        self._reader: sqlite3.Connection | None = None  # the vector index's connection
        self._reader_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._index: VectorIndex | None = None
        self._terms: TermStats | None = None
        self.embedder_id: str | None = None
        self._local = threading.local()  # each thread's inline connection (see `_run`)
        self._inline_dbs: list[sqlite3.Connection] = []
        self._inline_lock = threading.Lock()
        self.thread_calls = 0  # calls that went to the database thread (for tests and bench)
        self._queued: Counter[str] = Counter()  # inline writes waiting on the database thread
        self._wal_path = f"{self.path}-wal"

    # Plumbing ------------------------------------------------------------------------
    async def _run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        inline: bool = False,
        write: str | None = None,
    ) -> T:
        """Run `fn` with a connection: on the database thread, or, with `inline`, first on
        the caller's thread through a connection of its own that never waits for a lock.

        `inline` is for short statements only (one conversation's rows, a small base's
        search): a trip to the database thread and back costs about 0.15 ms of CPU, ten times
        such a read. When another connection holds the write lock, the inline attempt fails at
        once, before changing anything, and `fn` goes to the database thread, which waits up
        to the busy timeout as always. `fn` must be safe to run twice in that case: a read, or
        a write whose first statement takes the lock (`_tx`, or a single statement).

        `write` names what a write belongs to (a conversation): once one of its writes waits on
        the database thread, its next writes queue behind it rather than overtake it inline
        the moment the lock is free, so that they commit in order; other conversations'
        writes still go inline.
        """
        if not inline or self._reader is None:
            return await self._on_thread(fn)
        if write is not None and self._queued[write]:
            return await self._on_thread(fn, queued=write)
        if write is not None and self._log_backlog():
            return await self._on_thread(_then_empty_the_log(fn), queued=write)
        db = self._inline_connection()
        self._local.inline = True
        try:
            return self._call(fn, db, busy_error=False)
        except _Stale:
            # A cache to rebuild (not on the event loop): a read, which nothing waits behind.
            busy = False
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if db.in_transaction:
                db.execute("ROLLBACK")
            busy = True
        finally:
            self._local.inline = False
        return await self._on_thread(fn, queued=write if busy else None)

    async def _on_thread(
        self, fn: Callable[[sqlite3.Connection], T], queued: str | None = None
    ) -> T:
        """`fn` on the database thread; `queued`: what an inline write sent there belongs to
        (counted, so that its next writes follow it instead of overtaking it)."""

        def call() -> T:
            if self._db is None:
                raise RuntimeError("store is not open; call `await store.open()` first")
            return self._call(fn, self._db)

        self.thread_calls += 1
        if queued is not None:
            self._queued[queued] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            if queued is not None:
                self._queued[queued] -= 1
                if not self._queued[queued]:
                    del self._queued[queued]

    def _log_backlog(self) -> bool:
        """Whether the write-ahead log has grown well past its usual size (a long reader held
        it, or another process wrote a lot): copying it into the file is then the database
        thread's work, not the event loop's (a 43 MB log took 120 ms)."""
        try:
            return os.stat(self._wal_path).st_size > LOG_BACKLOG_BYTES
        except OSError:
            return False

    def _inline_connection(self) -> sqlite3.Connection:
        """This thread's connection for inline calls (opened on first use, closed by `close`)."""
        db = getattr(self._local, "db", None)
        if db is None:
            if self._db is None:
                raise RuntimeError("store is not open; call `await store.open()` first")
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            db.execute("PRAGMA busy_timeout=0")  # never wait on the event loop
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
            db.execute("PRAGMA synchronous=NORMAL")  # as the main connection: no fsync per commit
            db.execute("PRAGMA foreign_keys=ON")
            # SQLite's automatic checkpoint stays on (every 1000 pages of log, a few ms on the
            # loop every few hundred turns): checkpointing from the database thread instead
            # made inline writes meet SQLITE_BUSY, and most of them fell back to that thread.
            db.row_factory = sqlite3.Row
            with self._inline_lock:
                self._inline_dbs.append(db)
            self._local.db = db
        return db

    def _call(
        self, fn: Callable[[sqlite3.Connection], T], db: sqlite3.Connection, busy_error: bool = True
    ) -> T:
        try:
            return fn(db)
        except sqlite3.OperationalError as exc:
            if busy_error and _is_busy(exc):
                raise StoreBusyError(
                    f"the database {self.path} stayed locked for "
                    f"{self.busy_timeout_ms} ms; retry shortly"
                ) from exc
            raise

    @staticmethod
    @contextmanager
    def _tx(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _open_connection(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
        )
        db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        return db

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = self._open_connection()
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
        apply_migrations(db)
        self._db = db
        row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        self.embedder_id = row[0] if row else None
        if self.path != ":memory:":  # another connection to ":memory:" is another database
            self._reader = self._open_connection()
            self._reader.execute("PRAGMA query_only=ON")

    async def open(self) -> None:
        if self._db is None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._run(shut)
            self._db = None
        self._executor.shutdown(wait=True)
        with self._inline_lock:
            for db in self._inline_dbs:
                db.close()
            self._inline_dbs.clear()
        self._local = threading.local()
        if self._reader is not None:
            with self._reader_lock:
                self._reader.close()
                self._reader = None

    async def ping(self) -> bool:
        try:
            return await self._run(
                lambda db: db.execute("SELECT 1").fetchone()[0] == 1, inline=True
            )
        except Exception:
            return False

    # Console sessions ------------------------------------------------------------------
    async def revoke_session(self, nonce: str, expires: int) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.execute(
                    "DELETE FROM meta WHERE key >= ? AND key < ? AND CAST(value AS INTEGER) < ?",
                    (REVOKED_PREFIX, REVOKED_END, int(time.time())),
                )
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (REVOKED_PREFIX + nonce, str(int(expires))),
                )

        await self._run(write)

    async def session_revoked(self, nonce: str) -> bool:
        return await self._run(
            lambda db: (
                db.execute("SELECT 1 FROM meta WHERE key = ?", (REVOKED_PREFIX + nonce,)).fetchone()
                is not None
            ),
            inline=True,
        )

    async def meta_setdefault(self, key: str, value: str) -> str:
        def write(db: sqlite3.Connection) -> str:
            with self._tx(db):
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
                return db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

        return await self._run(write)

    # Knowledge -----------------------------------------------------------------------
    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'chunks_version'"
        )

    async def get_embedder_id(self) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            return row[0] if row else None

        self.embedder_id = await self._run(read)
        return self.embedder_id

    @staticmethod
    def _document(row: sqlite3.Row) -> DocumentRecord:
        return DocumentRecord(
            id=row["id"],
            filename=row["filename"],
            title=row["title"],
            owner=row["owner"],
            owner_reason=row["owner_reason"],
            tags=json.loads(row["tags"]),
            category=row["category"],
            priority=row["priority"],
            content_hash=row["content_hash"],
            source_path=row["source_path"],
            url=row["url"],
            chunks=row["chunks"],
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
        )

    _DOC_SELECT = (
        "SELECT d.*, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS chunks "
        "FROM documents d"
    )

    async def get_document(self, filename: str) -> DocumentRecord | None:
        def read(db: sqlite3.Connection) -> DocumentRecord | None:
            row = db.execute(self._DOC_SELECT + " WHERE d.filename = ?", (filename,)).fetchone()
            return self._document(row) if row else None

        return await self._run(read)

    async def list_documents(self, owner: str | None = None) -> list[DocumentRecord]:
        def read(db: sqlite3.Connection) -> list[DocumentRecord]:
            if owner is None:
                rows = db.execute(self._DOC_SELECT + " ORDER BY d.filename").fetchall()
            else:
                rows = db.execute(
                    self._DOC_SELECT + " WHERE d.owner = ? ORDER BY d.filename", (owner,)
                ).fetchall()
            return [self._document(row) for row in rows]

        return await self._run(read)

    async def save_document(
        self,
        document: DocumentRecord,
        chunks: list[ChunkRecord],
        embeddings: np.ndarray,
        embedder_id: str,
    ) -> int:
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk is required")
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)

        def write(db: sqlite3.Connection) -> int:
            with self._tx(db):
                row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
                if row and row[0] != embedder_id:
                    raise mismatch_error(row[0], embedder_id)
                if not row:
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('embedder', ?)", (embedder_id,)
                    )
                now = _now()
                existing = db.execute(
                    "SELECT id, created_at FROM documents WHERE filename = ?",
                    (document.filename,),
                ).fetchone()
                values = (
                    document.title,
                    document.owner,
                    document.owner_reason,
                    json.dumps(document.tags, ensure_ascii=False),
                    document.category,
                    document.priority,
                    document.content_hash,
                    document.source_path,
                    document.url,
                )
                if existing:
                    doc_id = existing["id"]
                    db.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
                    db.execute(
                        "UPDATE documents SET title = ?, owner = ?, owner_reason = ?, tags = ?, "
                        "category = ?, priority = ?, content_hash = ?, source_path = ?, url = ?, "
                        "updated_at = ? WHERE id = ?",
                        (*values, now, doc_id),
                    )
                else:
                    doc_id = db.execute(
                        "INSERT INTO documents (title, owner, owner_reason, tags, category, "
                        "priority, content_hash, source_path, url, filename, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*values, document.filename, now, now),
                    ).lastrowid
                key = owner_key(document.owner)
                db.executemany(
                    "INSERT INTO chunks (document_id, position, heading_path, text, keywords, "
                    "embedding, embedder, owner_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            doc_id,
                            chunk.position,
                            chunk.heading_path,
                            chunk.text,
                            json.dumps(chunk.keywords, ensure_ascii=False),
                            vectors[i].tobytes(),
                            embedder_id,
                            key,
                        )
                        for i, chunk in enumerate(chunks)
                    ],
                )
                self._bump(db)
                self.embedder_id = embedder_id
                return int(doc_id)

        return await self._run(write)

    async def set_owner(self, filename: str, owner: str, reason: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                cursor = db.execute(
                    "UPDATE documents SET owner = ?, owner_reason = ?, updated_at = ? "
                    "WHERE filename = ?",
                    (owner, reason, _now(), filename),
                )
                if cursor.rowcount == 0:
                    raise NotFoundError(f"no document named '{filename}'; see `copines documents`")
                db.execute(  # the full-text index follows (trigger chunks_au)
                    "UPDATE chunks SET owner_key = ? WHERE document_id = "
                    "(SELECT id FROM documents WHERE filename = ?)",
                    (owner_key(owner), filename),
                )
                self._bump(db)

        await self._run(write)

    async def delete_document(self, filename: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                cursor = db.execute("DELETE FROM documents WHERE filename = ?", (filename,))
                if cursor.rowcount == 0:
                    raise NotFoundError(f"no document named '{filename}'; see `copines documents`")
                self._bump(db)

        await self._run(write)

    async def all_chunks(self) -> list[StoredChunk]:
        def read(db: sqlite3.Connection) -> list[StoredChunk]:
            rows = db.execute(
                "SELECT c.id, c.text, c.heading_path, d.title FROM chunks c "
                "JOIN documents d ON d.id = c.document_id ORDER BY c.id"
            ).fetchall()
            return [StoredChunk(r["id"], r["text"], r["heading_path"], r["title"]) for r in rows]

        return await self._run(read)

    async def replace_embeddings(
        self, ids: list[int], embeddings: np.ndarray, embedder_id: str
    ) -> None:
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)

        def write(db: sqlite3.Connection) -> None:
            with self._tx(db):
                db.executemany(
                    "UPDATE chunks SET embedding = ?, embedder = ? WHERE id = ?",
                    [(vectors[i].tobytes(), embedder_id, cid) for i, cid in enumerate(ids)],
                )
                left = db.execute(
                    "SELECT COUNT(*) FROM chunks WHERE embedder != ?", (embedder_id,)
                ).fetchone()[0]
                if left:
                    raise RuntimeError(f"{left} chunks changed during reindex; run it again")
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('embedder', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (embedder_id,),
                )
                self._bump(db)
                self.embedder_id = embedder_id

        await self._run(write)

    def _current_index(self, db: sqlite3.Connection) -> VectorIndex:
        """The cached vector index, rebuilt when any process changed the chunks."""
        version = db.execute("SELECT value FROM meta WHERE key = 'chunks_version'").fetchone()[0]
        index = self._index
        if index is not None and index.version == version:
            return index
        if getattr(self._local, "inline", False):
            raise _Stale  # rebuilding takes seconds on a large base: on the database thread
        with self._index_lock:  # one rebuild, whichever connection asks first
            index = self._index
            if index is not None and index.version == version:
                return index
            return self._build_index(db)

    def _build_index(self, db: sqlite3.Connection) -> VectorIndex:
        db.execute("BEGIN")  # one snapshot for the version and the rows
        try:
            version = db.execute("SELECT value FROM meta WHERE key = 'chunks_version'").fetchone()[
                0
            ]
            row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            rows = db.execute(
                "SELECT c.id, d.owner, c.embedding FROM chunks c "
                "JOIN documents d ON d.id = c.document_id ORDER BY c.id"
            ).fetchall()
        finally:
            db.execute("COMMIT")
        self.embedder_id = row[0] if row else None
        dim = len(rows[0][2]) // 4 if rows else 0
        self._index = VectorIndex.build(
            version, dim, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        )
        return self._index

    def _checked_index(self, db: sqlite3.Connection, vector: np.ndarray) -> VectorIndex:
        index = self._current_index(db)
        if len(index) and index.dim != len(vector):
            raise mismatch_error(self.embedder_id or "?", f"an embedder of {len(vector)} dims")
        return index

    async def dense_search(
        self, expert: str, vector: np.ndarray, limit: int, threshold: float
    ) -> list[tuple[int, float]]:
        owners = (expert, SHARED)
        if self._small_index():
            index = await self._run(lambda db: self._checked_index(db, vector), inline=True)
            if len(index) > INLINE_MAX_CHUNKS:  # the base grew: rebuilt large, scanned off the loop
                return await asyncio.to_thread(index.search, owners, vector, limit, threshold)
            return index.search(owners, vector, limit, threshold)
        if self._reader is None:  # in memory: the one connection, on the database thread
            index = await self._run(lambda db: self._checked_index(db, vector))
            return await asyncio.to_thread(index.search, owners, vector, limit, threshold)
        # Through the reader connection, in one trip to a worker thread: the keyword
        # search running alongside holds the database thread, and the dense search used to
        # wait for it there just to check the index's version.
        return await asyncio.to_thread(self._dense_search, owners, vector, limit, threshold)

    def _dense_search(
        self, owners: tuple[str, ...], vector: np.ndarray, limit: int, threshold: float
    ) -> list[tuple[int, float]]:
        with self._reader_lock:
            if self._reader is None:
                raise RuntimeError("store is not open; call `await store.open()` first")
            index = self._call(lambda db: self._checked_index(db, vector), self._reader)
        # The index is immutable: scanned outside the lock.
        return index.search(owners, vector, limit, threshold)

    def _term_stats(self, db: sqlite3.Connection) -> TermStats:
        """How many chunks hold each indexed term, rebuilt when any process changed them."""
        version = db.execute("SELECT value FROM meta WHERE key = 'chunks_version'").fetchone()[0]
        if self._terms is not None and self._terms.version == version:
            return self._terms
        if getattr(self._local, "inline", False):
            raise _Stale
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_vocab "
            "USING fts5vocab(main, chunks_fts, 'row')"
        )
        db.execute("BEGIN")  # one snapshot for the version and the counts
        try:
            version = db.execute("SELECT value FROM meta WHERE key = 'chunks_version'").fetchone()[
                0
            ]
            rows = db.execute("SELECT term, doc FROM temp.chunks_vocab ORDER BY term").fetchall()
            total = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        finally:
            db.execute("COMMIT")
        self._terms = TermStats(version, [r[0] for r in rows], [r[1] for r in rows], total)
        return self._terms

    async def keyword_search(self, expert: str, terms: list[str], limit: int) -> list[int]:
        terms = [t.replace('"', "") for t in terms]
        if not fts_query(terms):
            return []

        def search(db: sqlite3.Connection) -> list[int]:
            # Ranking every chunk that holds a common word is what makes full-text search
            # slow on a big base (at 100k chunks one such word matches 10-20k rows), and
            # those words weigh least in bm25: keep the rarest terms within a row budget.
            chosen = self._term_stats(db).select(terms, KEYWORD_ROW_BUDGET)
            if not chosen:
                return []
            owners = " OR ".join(f'"{owner_key(o)}"' for o in (expert, SHARED))
            match = f"{{text heading_path}} : ({fts_query(chosen)}) AND owner_key : ({owners})"
            rows = db.execute(
                # bm25() with its weights rather than the table's `rank` (the same ones: text
                # 1, heading 0.5, owner token 0): the same order, 13% less time.
                "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY bm25(chunks_fts, 1.0, 0.5, 0.0) LIMIT ?",
                (match, limit),
            ).fetchall()
            return [r[0] for r in rows]

        terms_known = self._terms
        return await self._run(
            search, inline=terms_known is not None and terms_known.total <= INLINE_MAX_CHUNKS
        )

    def _small_index(self) -> bool:
        index = self._index
        return index is not None and len(index) <= INLINE_MAX_CHUNKS

    def searches_inline(self) -> bool:
        terms = self._terms
        return (
            self._reader is not None
            and self._small_index()
            and terms is not None
            and terms.total <= INLINE_MAX_CHUNKS
        )

    async def get_passages(
        self, expert: str, chunk_ids: list[int], vector: np.ndarray | None = None
    ) -> list[Passage]:
        if not chunk_ids:
            return []

        def read(db: sqlite3.Connection) -> list[Passage]:
            index = self._checked_index(db, vector) if vector is not None else None
            if index is not None and len(index) <= INLINE_MAX_CHUNKS:
                # A small base's passages are kept with its index snapshot: only the ones
                # never asked for are read.
                cached = index.passages
                missing = [i for i in chunk_ids if i not in cached]
                if missing:
                    for row in db.execute(PASSAGES_SQL, (json.dumps(missing),)):
                        cached[row[0]] = tuple(row[1:])
                rows = [(i, *cached[i]) for i in chunk_ids if i in cached]
                rows = [r for r in rows if r[4] in (expert, SHARED)]
            else:
                rows = db.execute(
                    PASSAGES_SQL + " AND d.owner IN (?, ?)", (json.dumps(chunk_ids), expert, SHARED)
                ).fetchall()
            scores = index.similarity([r[0] for r in rows], vector) if index is not None else {}
            by_id = {
                r[0]: Passage(
                    chunk_id=r[0],
                    document_id=r[1],
                    filename=r[2],
                    title=r[3],
                    owner=r[4],
                    heading_path=r[5],
                    text=r[6],
                    url=r[7],
                    dense_score=scores.get(r[0], 0.0),
                )
                for r in rows
            }
            return [by_id[i] for i in chunk_ids if i in by_id]

        return await self._run(read, inline=self._small_index())

    async def count_chunks(self) -> int:
        return await self._run(lambda db: db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


def _then_empty_the_log(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """`fn`, then a checkpoint that copies the whole log into the file and empties it."""

    def call(db: sqlite3.Connection) -> T:
        result = fn(db)
        with suppress(sqlite3.OperationalError):  # a reader still holds it: the next write
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return result

    return call


class _Stale(Exception):
    """An inline call found a cache (vector index, term counts) to rebuild."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)
