"""What only the SQLite store has: its file, its migrations, its in-memory vector cache."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import copines.store.sqlite as sqlite_module
from copines.errors import StoreBusyError
from copines.experts import SHARED
from copines.store.base import Message
from copines.store.sqlite import SQLiteStore, fts_query
from copines.store.sqlite_migrations import MIGRATIONS, apply_migrations
from copines.text import search_terms
from tests.store.test_knowledge_store import EMBEDDER, chunks, doc, seed, unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pair(tmp_path: Path):
    """Two stores on one file, as two processes would have."""
    a, b = SQLiteStore(tmp_path / "kb.db"), SQLiteStore(tmp_path / "kb.db")
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def ids_seen(store: SQLiteStore, expert: str, vector: np.ndarray) -> set[int]:
    return {cid for cid, _ in await store.dense_search(expert, vector, 100, -1.0)}


async def test_the_other_instance_sees_every_change(pair):
    a, b = pair
    await seed(a)
    assert len(await ids_seen(b, "audrey", unit(1, 0))) == 3  # b builds its cache now
    # A new document through a.
    await a.save_document(doc("a-new.md", "audrey"), chunks("neuf"), unit(1)[None, :], EMBEDDER)
    assert len(await ids_seen(b, "audrey", unit(1, 0))) == 4
    # A document moved through a.
    await a.set_owner("c-reels.md", "audrey", "moved")
    assert len(await ids_seen(b, "audrey", unit(1, 0))) == 5
    assert len(await ids_seen(b, "carole", unit(1, 0))) == 1  # the shared one only
    # A document deleted through a.
    await a.delete_document("a-funnel.md")
    assert len(await ids_seen(b, "audrey", unit(1, 0))) == 3
    # A changed document through a: new vectors, same filename.
    await a.save_document(
        doc("a-new.md", "audrey", "h2"),
        chunks("neuf", "encore"),
        np.vstack([unit(0, 1)] * 2),
        EMBEDDER,
    )
    hits = await b.dense_search("audrey", unit(0, 1), 100, 0.99)
    assert len(hits) == 3  # two new chunks and the moved reels chunk


async def test_another_process_deleting_is_seen(pair, tmp_path: Path):
    a, b = pair
    await seed(a)
    assert len(await ids_seen(b, "carole", unit(0, 1))) == 2
    script = textwrap.dedent(
        f"""
        import asyncio
        from copines.store.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore({str(tmp_path / "kb.db")!r})
            await store.open()
            await store.delete_document("c-reels.md")
            await store.close()

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)
    assert len(await ids_seen(b, "carole", unit(0, 1))) == 1


async def test_the_cache_is_reused_while_nothing_changes(pair):
    a, _ = pair
    await seed(a)
    await a.dense_search("audrey", unit(1, 0), 5, 0.0)
    index = a._index
    await a.dense_search("carole", unit(0, 1), 5, 0.0)
    await a.keyword_search("audrey", ["tunnel"], 5)
    assert a._index is index
    await a.set_owner("c-reels.md", SHARED, "x")
    await a.dense_search("audrey", unit(1, 0), 5, 0.0)
    assert a._index is not index


async def warm(store: SQLiteStore) -> None:
    """One search of each kind, which builds the vector index and the term counts."""
    await store.keyword_search("audrey", ["tunnel"], 5)
    await store.dense_search("audrey", unit(1, 0), 5, -1.0)


async def test_a_turns_calls_on_a_small_base_stay_on_the_event_loop(pair):
    """A trip to the database thread costs more CPU than these reads and writes themselves."""
    a, _ = pair
    await seed(a)
    await warm(a)
    before = a.thread_calls
    conversation = await a.create_conversation("c1", "hash")
    assert (await a.get_conversation("c1")).token_hash == "hash"
    user_id = await a.add_message(Message("c1", "user", "Un tunnel de vente ?"))
    ids = await a.keyword_search("audrey", ["tunnel", "vente"], 5)
    dense = await a.dense_search("audrey", unit(1, 0), 5, -1.0)
    passages = await a.get_passages("audrey", ids, unit(1, 0))
    answer_id = await a.add_message(Message("c1", "assistant", "Voici.", agent="audrey"))
    await a.set_conversation_expert("c1", "audrey")
    assert a.thread_calls == before
    assert conversation.id == "c1" and answer_id > user_id
    assert [m.content for m in await a.get_messages("c1")] == ["Un tunnel de vente ?", "Voici."]
    assert (await a.get_conversation("c1")).expert == "audrey"
    assert passages and passages[0].text == "tunnel de vente et page de capture"
    assert passages[0].dense_score > 0.9 and len(dense) == 3
    assert a.thread_calls == before


async def test_a_write_waits_for_another_writer_instead_of_failing(pair, tmp_path: Path):
    a, b = pair
    await a.create_conversation("c1", "hash")
    other = sqlite3.connect(tmp_path / "kb.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    before = a.thread_calls
    write = asyncio.create_task(a.add_message(Message("c1", "user", "Bonjour")))
    await asyncio.sleep(0.3)
    assert not write.done()  # waiting on the database thread, within the busy timeout
    assert a.thread_calls == before + 1
    assert [m.content for m in await b.get_messages("c1")] == []
    other.execute("COMMIT")
    other.close()
    message_id = await write
    assert [(m.id, m.content) for m in await b.get_messages("c1")] == [(message_id, "Bonjour")]


async def test_writes_made_while_one_waits_for_the_lock_keep_their_order(pair, tmp_path: Path):
    """Once a write waits on the database thread, later ones queue behind it rather than
    overtake it inline the moment the lock is free: ids and timestamps follow the order."""
    a, _ = pair
    await a.create_conversation("c1", "hash")
    other = sqlite3.connect(tmp_path / "kb.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    first = asyncio.create_task(a.add_message(Message("c1", "assistant", "premier")))
    await asyncio.sleep(0.05)  # it failed inline and waits on the database thread
    other.execute("COMMIT")
    other.close()
    await a.add_message(Message("c1", "user", "second"))
    await first
    messages = await a.get_messages("c1")
    assert [m.content for m in messages] == ["premier", "second"]
    assert messages[0].created_at <= messages[1].created_at
    assert (await a.get_conversation("c1")).updated_at == messages[1].created_at
    before = a.thread_calls
    await a.add_message(Message("c1", "user", "troisième"))  # nothing waits: inline again
    assert a.thread_calls == before


async def test_one_conversation_waiting_does_not_hold_the_others_off_the_loop(pair, tmp_path: Path):
    a, _ = pair
    await a.create_conversation("c1", "hash")
    await a.create_conversation("c2", "hash")
    other = sqlite3.connect(tmp_path / "kb.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    waiting = asyncio.create_task(a.add_message(Message("c1", "user", "en attente")))
    await asyncio.sleep(0.05)
    other.execute("COMMIT")
    other.close()
    before = a.thread_calls
    await a.add_message(Message("c2", "user", "ailleurs"))  # another conversation: inline
    assert a.thread_calls == before
    await a.add_message(Message("c1", "user", "après"))  # behind its own waiting write
    await waiting
    assert a.thread_calls == before + 1
    assert [m.content for m in await a.get_messages("c1")] == ["en attente", "après"]


async def test_a_log_backlog_is_checkpointed_off_the_event_loop(tmp_path: Path):
    """A long reader held the log while another process wrote 16 MB: the next commit's
    automatic checkpoint copies it all, so that write goes to the database thread; the log
    file is cut back after it and the writes come back on the loop."""
    path = tmp_path / "kb.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.create_conversation("c1", "hash")
        await store.add_message(Message("c1", "user", "avant"))
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM messages").fetchone()
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("CREATE TABLE bulk (b BLOB)")
        for _ in range(16):
            writer.execute("INSERT INTO bulk VALUES (?)", (bytes(1 << 20),))
        writer.close()
        reader.execute("COMMIT")
        reader.close()
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size > sqlite_module.LOG_BACKLOG_BYTES
        before = store.thread_calls
        await store.add_message(Message("c1", "user", "pendant"))
        assert store.thread_calls == before + 1  # checkpointed on the database thread
        assert wal.stat().st_size <= sqlite_module.JOURNAL_LIMIT_BYTES
        await store.add_message(Message("c1", "user", "après"))
        assert store.thread_calls == before + 1  # back on the loop
        assert [m.content for m in await store.get_messages("c1")] == ["avant", "pendant", "après"]
    finally:
        await store.close()


async def test_a_locked_database_still_fails_after_the_busy_timeout(tmp_path: Path):
    store = SQLiteStore(tmp_path / "kb.db", busy_timeout_ms=200)
    await store.open()
    try:
        await store.create_conversation("c1", "hash")
        other = sqlite3.connect(tmp_path / "kb.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusyError, match="locked for 200 ms"):
            await store.add_message(Message("c1", "user", "Bonjour"))
        other.execute("ROLLBACK")
        other.close()
        assert await store.get_messages("c1") == []  # nothing half-written
    finally:
        await store.close()


async def test_passages_kept_with_the_index_follow_every_change(pair):
    """b keeps the passages it has read with its index snapshot; a's changes reach it."""
    a, b = pair
    await seed(a)
    ids = sorted(await ids_seen(b, "audrey", unit(1, 0)))

    async def titles(expert: str) -> list[str]:
        return [p.title for p in await b.get_passages(expert, ids, unit(1, 0))]

    assert await titles("audrey") == ["a funnel", "a funnel", "agence faq"]
    assert b._index is not None and len(b._index.passages) == 3
    assert await titles("audrey") == ["a funnel", "a funnel", "agence faq"]  # from memory
    renamed = doc("a-funnel.md", "audrey", digest="h2")
    renamed.title = "Tunnels"
    await a.save_document(
        renamed, chunks("tunnel", "email"), np.vstack([unit(1, 0), unit(1, 0.2)]), EMBEDDER
    )
    ids = sorted(await ids_seen(b, "audrey", unit(1, 0)))
    assert await titles("audrey") == ["agence faq", "Tunnels", "Tunnels"]
    await a.set_owner("a-funnel.md", "carole", "moved")
    assert await titles("audrey") == ["agence faq"]  # no longer hers
    assert await titles("carole") == ["agence faq", "Tunnels", "Tunnels"]


async def test_searches_run_inline_only_on_a_small_base_with_its_caches_built(
    pair, monkeypatch, tmp_path: Path
):
    """The retriever runs the two searches one after the other only when both are inline."""
    a, _ = pair
    await seed(a)
    assert not a.searches_inline()  # no vector index nor term counts yet
    await warm(a)
    assert a.searches_inline()
    monkeypatch.setattr(sqlite_module, "INLINE_MAX_CHUNKS", 3)  # the seed has 4 chunks
    assert not a.searches_inline()
    monkeypatch.undo()
    memory = SQLiteStore(":memory:")  # one connection, on the database thread only
    await memory.open()
    try:
        await seed(memory)
        await warm(memory)
        assert not memory.searches_inline()
    finally:
        await memory.close()


async def test_a_large_base_is_searched_off_the_event_loop(pair, monkeypatch):
    a, _ = pair
    await seed(a)
    await warm(a)
    monkeypatch.setattr(sqlite_module, "INLINE_MAX_CHUNKS", 3)  # the seed has 4 chunks
    before = a.thread_calls
    ids = await a.keyword_search("audrey", ["tunnel"], 5)
    await a.get_passages("audrey", ids, unit(1, 0))
    assert a.thread_calls == before + 2
    assert len(await ids_seen(a, "audrey", unit(1, 0))) == 3  # the scan itself on a thread


async def test_a_changed_base_is_reindexed_off_the_loop_then_read_inline(pair):
    a, b = pair
    await seed(a)
    await warm(b)
    await a.save_document(doc("a-new.md", "audrey"), chunks("neuf"), unit(1)[None, :], EMBEDDER)
    before = b.thread_calls
    assert len(await ids_seen(b, "audrey", unit(1, 0))) == 4  # the new chunk, at once
    assert await b.keyword_search("audrey", ["neuf"], 5)
    assert b.thread_calls == before + 2  # each rebuild on the database thread, once
    await b.keyword_search("audrey", ["neuf"], 5)
    await ids_seen(b, "audrey", unit(1, 0))
    assert b.thread_calls == before + 2


async def test_file_is_in_wal_mode_with_every_migration_recorded(tmp_path: Path):
    store = SQLiteStore(tmp_path / "sub" / "kb.db")
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "sub" / "kb.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = [r[0] for r in db.execute("SELECT name FROM migrations ORDER BY rowid")]
    assert names == [name for name, _ in MIGRATIONS]
    db.isolation_level = None
    assert apply_migrations(db) == []  # nothing left to apply
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"documents", "chunks", "chunks_fts", "conversations", "messages"} <= tables
    assert {"escalations", "feedback", "meta"} <= tables
    db.close()


async def test_reopening_keeps_the_embedder(tmp_path: Path):
    store = SQLiteStore(tmp_path / "kb.db")
    await store.open()
    await seed(store)
    await store.close()
    again = SQLiteStore(tmp_path / "kb.db")
    await again.open()
    assert again.embedder_id == EMBEDDER
    assert len(await ids_seen(again, "audrey", unit(1, 0))) == 3
    await again.close()


def test_fts_query_quotes_every_term():
    assert fts_query(["tunnel", "page"]) == '"tunnel"* OR "page"*'
    assert fts_query(['a"b OR c', ""]) == '"ab OR c"*'
    assert fts_query([]) == ""


async def test_a_base_from_before_the_owner_index_is_upgraded(tmp_path: Path):
    """m003 moves the owner into the full-text index: older files keep working."""
    from copines.store import sqlite_migrations

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, fn in sqlite_migrations.MIGRATIONS[:2]:  # the schema as first released
        db.execute("BEGIN")
        fn(db)
        db.execute("INSERT INTO migrations VALUES (?, 'then')", (name,))
        db.execute("COMMIT")
    db.execute("INSERT INTO meta VALUES ('embedder', ?)", (EMBEDDER,))
    for doc_id, (owner, text) in enumerate(
        [("audrey", "tunnel de vente"), ("carole", "tunnel instagram"), (SHARED, "tunnel commun")],
        1,
    ):
        db.execute(
            "INSERT INTO documents (id, filename, title, owner, content_hash, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, 'h', 'then', 'then')",
            (doc_id, f"{owner}.md", owner, owner),
        )
        db.execute(
            "INSERT INTO chunks (document_id, position, text, embedding, embedder) "
            "VALUES (?, 0, ?, ?, ?)",
            (doc_id, text, unit(doc_id).tobytes(), EMBEDDER),
        )
    db.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        titles = {c.id: c.title for c in await store.all_chunks()}
        found = await store.keyword_search("audrey", ["tunnel"], 10)
        assert sorted(titles[i] for i in found) == ["audrey", SHARED]
        found = await store.keyword_search("carole", ["instagram"], 10)
        assert [titles[i] for i in found] == ["carole"]
        await store.set_owner("carole.md", "audrey", "moved")
        found = await store.keyword_search("audrey", ["instagram"], 10)
        assert [titles[i] for i in found] == ["carole"]
        assert await store.keyword_search("carole", ["instagram"], 10) == []
    finally:
        await store.close()


async def test_the_fulltext_index_has_a_prefix_index_for_every_stem_length(tmp_path: Path):
    """m004: a prefix query reads its own index when its length is one of the indexed ones;
    the searched stems are 3 to 8 characters long."""
    store = SQLiteStore(tmp_path / "kb.db")
    await store.open()
    try:
        await seed(store)
        sql = await store._run(
            lambda db: db.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'chunks_fts'"
            ).fetchone()[0]
        )
        assert "prefix='3 4 5 6 7 8'" in sql
        terms = search_terms("Je voudrais automatiser ma séquence d'emails de bienvenue, ok ?")
        assert terms and all(3 <= len(t) <= 8 for t in terms)
        for length in range(3, 9):
            found = await store.keyword_search("audrey", ["sequence"[:length]], 5)
            assert len(found) == 1, length  # "séquence email automatique"
    finally:
        await store.close()


async def test_expert_ids_sharing_a_prefix_stay_apart(tmp_path: Path):
    """'jean' must not see 'jean-marie': the tokenizer splits ids on '-'."""
    store = SQLiteStore(tmp_path / "kb.db")
    await store.open()
    try:
        await store.save_document(
            doc("jm.md", "jean-marie"), chunks("tunnel secret"), unit(1)[None, :], EMBEDDER
        )
        await store.save_document(
            doc("j.md", "jean"), chunks("tunnel public"), unit(0, 1)[None, :], EMBEDDER
        )
        found = await store.keyword_search("jean", ["tunnel"], 10)
        assert len(found) == 1
        [passage] = await store.get_passages("jean", found)
        assert passage.filename == "j.md"
        assert len(await store.keyword_search("jean-marie", ["secret"], 10)) == 1
        assert await store.keyword_search("jean", ["secret"], 10) == []
    finally:
        await store.close()


def test_term_selection_keeps_the_rarest_terms_within_the_budget():
    from copines.store.sqlite import TermStats

    stats = TermStats("1", ["appel", "appels", "kajabi", "tunnel"], [600, 200, 30, 900], 1000)
    assert stats.prefix_docs("appel") == 800  # every term under the prefix
    assert stats.prefix_docs("kaj") == 30 and stats.prefix_docs("zzz") == 0
    assert stats.prefix_docs("Tunnel") == 900
    # All fit: every present term, in the caller's order; absent ones dropped.
    assert stats.select(["tunnel", "zzz", "kajabi", "appel"], 4000) == ["tunnel", "kajabi", "appel"]
    # A budget of 900 rows: the rarest first, until the next one would overflow.
    assert stats.select(["tunnel", "kajabi", "appel"], 900) == ["kajabi", "appel"]
    # The rarest term is always kept, even alone over the budget.
    assert stats.select(["tunnel", "appel"], 10) == ["appel"]
    assert stats.select(["zzz"], 10) == []
