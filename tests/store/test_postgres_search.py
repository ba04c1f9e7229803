"""Postgres only: match_chunks' owner filter, the exact and HNSW plans, the vector column's size,
French keyword search, and HNSW recall against exact search on the sample knowledge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from copines.deps import Deps
from copines.errors import EmbedderMismatchError
from copines.eval import read_part
from copines.providers.embeddings import LocalEmbedder
from copines.store.base import ChunkRecord, DocumentRecord
from copines.store.postgres import PostgresStore
from copines.store.postgres_keywords import ROW_BUDGET, LexemeCounts, tsquery_words
from tests.conftest import EXAMPLES, make_settings, postgres_url_or_skip

pytestmark = pytest.mark.postgres
OWNERS = ("audrey", "carole", "shared", "third")
# The owners these tests use, registered as the expert files would be (a trigger refuses others).
KNOWN = [*OWNERS, "quatrieme", "Cinq ème"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests._postgres import fresh_database

    with fresh_database(postgres_url_or_skip()) as url:
        yield url


@pytest.fixture
async def pg_store(pg_url: str, tmp_path: Path) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, make_settings(tmp_path, database_url=pg_url))
    await store.open()
    await store.register_owners(KNOWN)
    try:
        yield store
    finally:
        await store.close()


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def _fill(store: PostgresStore, per_owner: int = 60, dim: int = 16) -> dict[str, np.ndarray]:
    vectors = {}
    for i, owner in enumerate(OWNERS):
        vectors[owner] = _unit(per_owner, dim, seed=i)
        await store.save_document(
            DocumentRecord(f"{owner}.md", owner.title(), owner, f"h{i}"),
            [ChunkRecord(j, f"passage {owner} {j}") for j in range(per_owner)],
            vectors[owner],
            "test:16",
        )
    return vectors


def _owners_of(url: str, ids: list[int]) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT d.agent_owner FROM copines.document_chunks c "
            "JOIN copines.documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
            (ids,),
        ).fetchall()
    return {r[0] for r in rows}


async def test_match_chunks_returns_only_the_experts_and_shared_chunks(
    pg_store: PostgresStore, pg_url: str
) -> None:
    vectors = await _fill(pg_store)
    for expert in ("audrey", "carole", "third"):
        # Query with another expert's vector: her chunks would be the nearest of all.
        other = "carole" if expert != "carole" else "audrey"
        for exact in (True, False):
            found = await pg_store.match_chunks(
                expert, vectors[other][0], 50, -1.0, exact=exact, ef_search=200
            )
            assert len(found) == 50
            assert _owners_of(pg_url, [cid for cid, _ in found]) == {expert, "shared"}
        # The SQL function itself, as Supabase's RPC or n8n would call it.
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(
                "SELECT id, filename, similarity FROM copines.match_chunks(%s::vector, %s, %s, %s)",
                (str(vectors[other][0].tolist()), expert, -1.0, 200),
            ).fetchall()
        assert {r[1] for r in rows} == {f"{expert}.md", "shared.md"}
        scores = [r[2] for r in rows]
        assert scores == sorted(scores, reverse=True)


async def test_the_threshold_and_the_count_are_honoured(pg_store: PostgresStore) -> None:
    vectors = await _fill(pg_store)
    query = vectors["audrey"][3]
    found = await pg_store.dense_search("audrey", query, 10, 0.5)
    assert found[0] == (pytest.approx(found[0][0]), pytest.approx(1.0, abs=1e-5))
    assert all(score >= 0.5 for _, score in found) and len(found) <= 10
    assert len(await pg_store.dense_search("audrey", query, 7, -1.0)) == 7


async def test_an_owner_changed_by_plain_sql_moves_the_chunks(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """The agency re-tags documents with UPDATE statements; the search follows."""
    vectors = await _fill(pg_store)
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE copines.documents SET agent_owner = 'audrey' WHERE filename LIKE 'car%'"
        )
    found = await pg_store.match_chunks("audrey", vectors["carole"][0], 30, -1.0, exact=True)
    assert _owners_of(pg_url, [cid for cid, _ in found]) <= {"audrey", "shared"}
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    await pg_store.set_owner("carole.md", "carole", "back")
    passages = await pg_store.get_passages("audrey", [cid for cid, _ in found])
    assert {p.owner for p in passages} <= {"audrey", "shared"}  # hydration filters again


def _plan(url: str, exact: bool, ef: int) -> str:
    with psycopg.connect(url) as conn, conn.transaction():
        if exact:
            conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        vector = conn.execute("SELECT embedding::text FROM copines.document_chunks").fetchone()[0]
        # Parameters, as the store sends them (a sub-select would keep the function opaque).
        rows = conn.execute(
            "EXPLAIN SELECT id, similarity FROM copines.match_chunks(%s::vector, %s, %s, %s)",
            (vector, "audrey", 0.0, 20),
        ).fetchall()
    return "\n".join(r[0] for r in rows)


async def test_the_hnsw_index_answers_unless_exact_search_is_asked(
    pg_store: PostgresStore, pg_url: str
) -> None:
    await _fill(pg_store, per_owner=300)
    with psycopg.connect(pg_url) as conn:
        conn.execute("ANALYZE copines.document_chunks")
    approx = _plan(pg_url, exact=False, ef=40)
    assert "document_chunks_embedding_audrey" in approx  # her index, unfiltered
    assert "document_chunks_embedding_shared" in approx
    assert "document_chunks_embedding_carole" not in approx
    assert "document_chunks_embedding_" not in _plan(pg_url, exact=True, ef=40)


async def test_the_parallel_walks_return_what_match_chunks_does(
    pg_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url=pg_url, pg_exact_search_below=0)
    store = PostgresStore(pg_url, settings)
    await store.open()
    await store.register_owners(KNOWN)
    try:
        vectors = await _fill(store, per_owner=200)
        assert (await store.search_plan("audrey"))[0] is False  # the HNSW path
        for expert, query in [("audrey", vectors["carole"][3]), ("carole", vectors["shared"][5])]:
            for threshold in (-1.0, 0.2):
                walked = await store.dense_search(expert, query, 20, threshold)
                sql_fn = await store.match_chunks(
                    expert, query, 20, threshold, exact=False, ef_search=160
                )
                assert [c for c, _ in walked] == [c for c, _ in sql_fn]
                assert [s for _, s in walked] == pytest.approx([s for _, s in sql_fn])
                assert all(score >= threshold for _, score in walked)
                assert _owners_of(pg_url, [c for c, _ in walked]) <= {expert, "shared"}
        assert len(await store.dense_search("audrey", vectors["audrey"][0], 20, -1.0)) == 20
    finally:
        await store.close()


async def test_the_plan_depends_on_size_and_the_owner_filter(pg_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, database_url=pg_url, pg_exact_search_below=150, pg_hnsw_ef_search=100
    )
    store = PostgresStore(pg_url, settings)
    await store.open()
    await store.register_owners(KNOWN)
    try:
        await store.save_document(
            DocumentRecord("a.md", "A", "audrey", "h"),
            [ChunkRecord(j, "x") for j in range(100)],
            _unit(100, 16, 0),
            "test:16",
        )
        assert await store.search_plan("audrey") == (True, 0)
        await _fill(store, per_owner=100)  # audrey 200 + shared 100
        assert await store.search_plan("audrey") == (False, 100)
        assert await store.search_plan("nobody") == (True, 0)  # only the 100 shared
    finally:
        await store.close()


async def test_the_first_ingest_sizes_the_vector_column(
    pg_store: PostgresStore, pg_url: str
) -> None:
    await _fill(pg_store, per_owner=5)
    with psycopg.connect(pg_url) as conn:
        column = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'copines.document_chunks'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE indexname LIKE 'document_chunks_embedding_%'"
            ).fetchall()
        )
    assert column == "vector(16)"
    assert set(indexes) == {f"document_chunks_embedding_{owner}" for owner in OWNERS}
    for owner in OWNERS:
        definition = indexes[f"document_chunks_embedding_{owner}"]
        assert "hnsw" in definition and "vector_cosine_ops" in definition
        assert f"WHERE (agent_owner = '{owner}'::text)" in definition
    assert await pg_store.get_embedder_id() == "test:16"

    with pytest.raises(EmbedderMismatchError, match="reindex"):
        await pg_store.save_document(
            DocumentRecord("b.md", "B", "audrey", "h"),
            [ChunkRecord(0, "x")],
            _unit(1, 16, 9),
            "other",
        )
    with pytest.raises(EmbedderMismatchError):
        await pg_store.dense_search("audrey", _unit(1, 32, 0)[0], 5, 0.0)
    assert (await pg_store.get_document("b.md")) is None


async def test_reindex_to_another_size_retypes_the_column(
    pg_store: PostgresStore, pg_url: str
) -> None:
    await _fill(pg_store, per_owner=5)
    chunks = await pg_store.all_chunks()
    new = _unit(len(chunks), 24, 5)
    await pg_store.replace_embeddings([c.id for c in chunks], new, "test:24")
    assert await pg_store.get_embedder_id() == "test:24"
    found = await pg_store.dense_search("audrey", new[0], 3, 0.0)
    assert found[0][0] == chunks[0].id and found[0][1] == pytest.approx(1.0, abs=1e-5)
    with psycopg.connect(pg_url) as conn:
        column = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'copines.document_chunks'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
    assert column == "vector(24)"
    assert _vector_indexes(pg_url) == {f"document_chunks_embedding_{o}" for o in OWNERS}


def _vector_indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'document_chunks_embedding_%'"
        ).fetchall()
    return {r[0] for r in rows}


async def test_a_new_owner_gets_her_index(pg_store: PostgresStore, pg_url: str, tmp_path) -> None:
    await _fill(pg_store, per_owner=5)
    await pg_store.set_owner("third.md", "quatrieme", "a new expert")
    assert "document_chunks_embedding_quatrieme" in _vector_indexes(pg_url)
    with psycopg.connect(pg_url) as conn:  # the agency re-tags in SQL: the next start indexes it
        conn.execute(
            "UPDATE copines.documents SET agent_owner = 'Cinq ème' WHERE filename = 'third.md'"
        )
    again = PostgresStore(pg_url, pg_store.settings)
    await again.open()
    await again.close()
    assert PostgresStore.vector_index_name("Cinq ème") in _vector_indexes(pg_url)


async def test_keyword_search_folds_accents_stems_french_and_takes_prefixes(
    pg_store: PostgresStore,
) -> None:
    texts = {
        "audrey": [
            "Étape 1 : configure ta séquence d'emails automatisée dans ActiveCampaign.",
            "Le pixel Meta mesure les conversions de ta page de vente.",
        ],
        "carole": ["Tes Reels doivent accrocher dès la première seconde."],
        "shared": ["L'agence propose un accompagnement personnalisé."],
    }
    for i, (owner, chunks) in enumerate(texts.items()):
        await pg_store.save_document(
            DocumentRecord(f"{owner}.md", owner, owner, "h"),
            [ChunkRecord(j, t) for j, t in enumerate(chunks)],
            _unit(len(chunks), 8, i),
            "test:8",
        )
    passages = {
        p.chunk_id: p.text
        for p in await pg_store.get_passages("audrey", [c.id for c in await pg_store.all_chunks()])
    }

    async def find(expert: str, terms: list[str]) -> list[str]:
        ids = await pg_store.keyword_search(expert, terms, 10)
        hydrated = await pg_store.get_passages(expert, ids)
        return [p.text for p in hydrated]

    assert await find("audrey", ["etape"]) == [texts["audrey"][0]]  # accent folded
    assert await find("audrey", ["sequence"]) == [texts["audrey"][0]]
    assert await find("audrey", ["automati"]) == [texts["audrey"][0]]  # a stem as a prefix
    assert await find("audrey", ["conversion"]) == [texts["audrey"][1]]  # French plural
    assert await find("audrey", ["reel"]) == []  # Carole's chunk stays hers
    assert await find("carole", ["reel"]) == [texts["carole"][0]]
    assert await find("carole", ["accompagn"]) == [texts["shared"][0]]  # shared is everyone's
    assert await find("audrey", ["'):*|!"]) == []  # tsquery syntax is neutralised
    assert len(passages) == 3


def test_tsquery_words_keep_only_words() -> None:
    assert tsquery_words(["etape", "a&b", "etape", "x:*|y"]) == ["etape", "a", "b", "x", "y"]
    assert tsquery_words(["", "!!"]) == []


@pytest.fixture
async def knowledge_pg(pg_url: str, tmp_path: Path, embedder: LocalEmbedder) -> AsyncIterator[Deps]:
    """The sample knowledge, ingested into a fresh Postgres database (real USE embeddings)."""
    deps = await Deps.create(make_settings(tmp_path, database_url=pg_url), embedder=embedder)
    try:
        await deps.ingester().ingest_paths([EXAMPLES])
        yield deps
    finally:
        await deps.aclose()


async def test_hnsw_recall_against_exact_search_on_the_sample_knowledge(
    knowledge_pg: Deps, embedder: LocalEmbedder
) -> None:
    store = knowledge_pg.store
    assert isinstance(store, PostgresStore)
    questions = [row["message"] for row in read_part("train", "routing")][:40]
    vectors = embedder.embed_sync(questions)
    hits = total = 0
    for expert in ("audrey", "carole"):
        for vector in vectors:
            exact = await store.match_chunks(expert, vector, 20, -1.0, exact=True)
            approx = await store.match_chunks(
                expert, vector, 20, -1.0, exact=False, ef_search=store.settings.pg_hnsw_ef_search
            )
            hits += len({c for c, _ in exact} & {c for c, _ in approx})
            total += len(exact)
    assert total > 0
    assert hits / total >= 0.98


async def test_keyword_ranking_prefers_chunks_holding_every_word(pg_store: PostgresStore) -> None:
    chunks = [
        ChunkRecord(i, f"Un paragraphe sur le calendrier éditorial, numéro {i}.") for i in range(30)
    ]
    chunks.append(ChunkRecord(30, "Ton calendrier éditorial pour tes reels de la semaine."))
    await pg_store.save_document(
        DocumentRecord("carole.md", "C", "carole", "h"), chunks, _unit(len(chunks), 8, 3), "test:8"
    )
    ids = await pg_store.keyword_search("carole", ["reel", "calendri"], 10)
    best = await pg_store.get_passages("carole", ids[:1])
    assert best[0].text.startswith("Ton calendrier")
    assert len(ids) == 10


def test_the_rarest_words_are_searched_within_the_row_budget() -> None:
    counts = LexemeCounts.from_stats(
        ["aquarell", "aquarelle", "calendri", "calendrier", "page"],
        [0.01, 0.01, 0.2, 0.2, 0.5, 0.01, 0.5, 0.0],  # pg_stats adds min, max and null share
        10_000,
    )
    assert counts.prefix_rows("aquarell") == 200  # both lexemes, an upper bound
    assert counts.prefix_rows("calendri") == 4000
    assert counts.prefix_rows("zephyr") == 0  # rarer than any counted lexeme
    assert counts.choose(["page", "calendri", "aquarell", "zephyr"], 1000) == ["aquarell", "zephyr"]
    assert counts.choose(["page", "calendri"], 1000) == ["calendri"]  # the rarest, always
    assert counts.choose(["page", "calendri"], 20_000) == ["page", "calendri"]
    small = LexemeCounts.from_stats(["page"], [0.9, 0.9, 0.9, 0.0], 800)
    assert small.choose(["page", "calendri"], 1000) == ["page", "calendri"]  # all fit


async def test_a_common_word_does_not_crowd_out_a_rare_one(
    pg_store: PostgresStore, pg_url: str
) -> None:
    # Every chunk says "page"; the last three alone say "aquarelle". Searching "page" would
    # find more rows than are ranked, in table order: the aquarelle ones would be left out.
    n = ROW_BUDGET + 200
    chunks = [ChunkRecord(i, f"Une page de vente, variante {i}.") for i in range(n - 3)]
    chunks += [ChunkRecord(n - 3 + i, f"La page aquarelle numéro {i}.") for i in range(3)]
    await pg_store.save_document(
        DocumentRecord("carole.md", "C", "carole", "h"), chunks, _unit(n, 8, 5), "test:8"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE copines.document_chunks")
    counts = await pg_store.lexeme_counts()
    assert counts.total == n and counts.prefix_rows("page") >= n * 0.9
    assert counts.choose(["page", "aquarell"], ROW_BUDGET) == ["aquarell"]
    ids = await pg_store.keyword_search("carole", ["page", "aquarell"], 10)
    found = await pg_store.get_passages("carole", ids)
    assert [p.text for p in found] == [c.text for c in chunks[-3:]]
