"""SQLite schema, as numbered migrations recorded in the `migrations` table."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register a migration; they run once each, in the order they are defined."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_knowledge(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta (key, value) VALUES ('chunks_version', '0');

        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            filename TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            owner TEXT NOT NULL,               -- agent_owner: an expert id or 'shared'
            owner_reason TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',   -- JSON list
            category TEXT,
            priority INTEGER NOT NULL DEFAULT 1,
            content_hash TEXT NOT NULL,
            source_path TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_documents_owner ON documents(owner);

        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            heading_path TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            keywords TEXT NOT NULL DEFAULT '[]',
            relevance_score REAL NOT NULL DEFAULT 1.0,
            embedding BLOB NOT NULL,           -- float32, L2-normalised
            embedder TEXT NOT NULL
        );
        CREATE INDEX idx_chunks_document ON chunks(document_id, position);

        -- Full-text search over chunk text and headings, accents folded.
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading_path, content='chunks', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, heading_path)
            VALUES (new.id, new.text, new.heading_path);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading_path)
            VALUES ('delete', old.id, old.text, old.heading_path);
        END;
        CREATE TRIGGER chunks_au AFTER UPDATE OF text, heading_path ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading_path)
            VALUES ('delete', old.id, old.text, old.heading_path);
            INSERT INTO chunks_fts(rowid, text, heading_path)
            VALUES (new.id, new.text, new.heading_path);
        END;
        """,
    )


@migration
def m002_conversations(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL,
            expert TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_conversations_updated ON conversations(updated_at);

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'team')),
            content TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'ok',
            agent TEXT,
            confidence REAL,
            router TEXT,
            sources TEXT NOT NULL DEFAULT '[]',
            model TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            timings TEXT NOT NULL DEFAULT '{}',
            meta TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE INDEX idx_messages_conversation ON messages(conversation_id, id);

        CREATE TABLE escalations (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            reason TEXT NOT NULL,
            primary_need TEXT NOT NULL DEFAULT '',
            brief TEXT NOT NULL DEFAULT '',
            closest_expert TEXT,
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'handled')),
            meta TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_escalations_status ON escalations(status, created_at);

        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            message_id INTEGER NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE,
            rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
            comment TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        """,
    )


def owner_key(owner: str) -> str:
    """The owner as one full-text token ("audrey" -> "o617564726579").

    Expert ids may hold '-' or '_', which the tokenizer splits on: "jean" would then match
    the chunks of "jean-marie". Hex letters and digits stay one token.
    """
    return "o" + owner.encode("utf-8").hex()


@migration
def m003_owner_in_fulltext(db: sqlite3.Connection) -> None:
    """Index each chunk's owner in the full-text table, so that keyword search restricts to
    an expert's and the shared chunks inside the MATCH itself: ranking then needs no join
    (a third of the time at 10k chunks)."""
    _script(
        db,
        """
        DROP TRIGGER chunks_ai;
        DROP TRIGGER chunks_ad;
        DROP TRIGGER chunks_au;
        DROP TABLE chunks_fts;
        ALTER TABLE chunks ADD COLUMN owner_key TEXT NOT NULL DEFAULT '';
        """,
    )
    for doc_id, owner in db.execute("SELECT id, owner FROM documents").fetchall():
        db.execute(
            "UPDATE chunks SET owner_key = ? WHERE document_id = ?", (owner_key(owner), doc_id)
        )
    _create_fulltext(db, prefixes=False)


@migration
def m004_fulltext_prefixes(db: sqlite3.Connection) -> None:
    """Prefix indexes for the lengths of the searched stems (3 to 8 characters, see
    `text.search_terms`): a prefix query ("email"*) then reads one index entry instead of
    scanning every term that starts with it. On the sample knowledge a question's keyword
    query went from 0.36-0.55 ms to 0.19-0.22 ms with the same rows, for an index 2.5x larger."""
    _script(
        db,
        """
        DROP TRIGGER chunks_ai;
        DROP TRIGGER chunks_ad;
        DROP TRIGGER chunks_au;
        DROP TABLE chunks_fts;
        """,
    )
    _create_fulltext(db, prefixes=True)


@migration
def m005_document_url(db: sqlite3.Connection) -> None:
    """A document's public address (from its front matter, or the page it was read from)."""
    db.execute("ALTER TABLE documents ADD COLUMN url TEXT")


@migration
def m006_sources(db: sqlite3.Connection) -> None:
    """The sources kept in sync (site, Drive folder, Notion database) and, per source, the
    documents they made with what the next sync compares against."""
    _script(
        db,
        """
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            owner TEXT NOT NULL DEFAULT 'auto',
            options TEXT NOT NULL DEFAULT '{}',
            origin TEXT NOT NULL DEFAULT 'cli',
            last_sync_at TEXT,
            last_status TEXT NOT NULL DEFAULT 'never',
            counts TEXT NOT NULL DEFAULT '{}',
            errors TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE source_items (
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            filename TEXT NOT NULL,
            url TEXT,
            etag TEXT,
            last_modified TEXT,
            version TEXT,
            content_hash TEXT NOT NULL DEFAULT '',
            meta TEXT NOT NULL DEFAULT '{}',
            synced_at TEXT NOT NULL,
            PRIMARY KEY (source_id, key)
        );
        CREATE INDEX idx_source_items_filename ON source_items(filename);
        """,
    )


FULLTEXT_TABLE = """
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading_path, owner_key, content='chunks', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        );
"""
FULLTEXT_TABLE_PREFIXES = """
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading_path, owner_key, content='chunks', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2', prefix='3 4 5 6 7 8'
        );
"""
FULLTEXT_FILL = """
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, heading_path, owner_key)
            VALUES (new.id, new.text, new.heading_path, new.owner_key);
        END;
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading_path, owner_key)
            VALUES ('delete', old.id, old.text, old.heading_path, old.owner_key);
        END;
        CREATE TRIGGER chunks_au AFTER UPDATE OF text, heading_path, owner_key ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading_path, owner_key)
            VALUES ('delete', old.id, old.text, old.heading_path, old.owner_key);
            INSERT INTO chunks_fts(rowid, text, heading_path, owner_key)
            VALUES (new.id, new.text, new.heading_path, new.owner_key);
        END;
        INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
        -- The text counts, the heading half as much, the owner token not at all.
        INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('rank', 'bm25(1.0, 0.5, 0.0)');
"""


@migration
def m007_visitor_privacy(db: sqlite3.Connection) -> None:
    """The visitor's optional email, and at most one open escalation per conversation (the
    older duplicates are closed first)."""
    _script(
        db,
        """
        ALTER TABLE conversations ADD COLUMN email TEXT;
        CREATE INDEX idx_conversations_email ON conversations(lower(email))
            WHERE email IS NOT NULL;
        UPDATE escalations SET status = 'handled' WHERE status = 'open' AND id NOT IN
            (SELECT max(id) FROM escalations WHERE status = 'open' GROUP BY conversation_id);
        CREATE UNIQUE INDEX idx_escalations_one_open ON escalations(conversation_id)
            WHERE status = 'open';
        """,
    )


def _create_fulltext(db: sqlite3.Connection, prefixes: bool) -> None:
    """The full-text table over the chunks (text, heading, owner token), its triggers, filled."""
    _script(db, FULLTEXT_TABLE_PREFIXES if prefixes else FULLTEXT_TABLE)
    _script(db, FULLTEXT_FILL)


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the current transaction (executescript would commit)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement[:80]}")


def apply_migrations(db: sqlite3.Connection) -> list[str]:
    """Run the migrations not yet recorded, each in its own transaction; returns their names.

    `db` must be in autocommit mode (isolation_level=None): transactions are explicit here.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the lock.
            if db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                db.execute("ROLLBACK")
                continue
            fn(db)
            db.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, datetime('now'))", (name,)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
