"""Postgres under the rest of copines: whole turns on the sample knowledge, and the same dense
results as the SQLite store (both search exactly at this size)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from copines.conversations import start_conversation
from copines.deps import Deps
from copines.providers.embeddings import LocalEmbedder
from copines.store.postgres import PostgresStore
from copines.turn import TurnRunner
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres
AUDREY_Q = "Comment je crée une séquence email de bienvenue pour mon lead magnet ?"
CAROLE_Q = "Comment trouver une bonne accroche pour mes reels Instagram ?"


@pytest.fixture
async def pg_knowledge(
    sample_knowledge_postgres: tuple[str, str], tmp_path: Path, embedder: LocalEmbedder
) -> AsyncIterator[Deps]:
    """Every part, on a Postgres copy of the sample knowledge (whatever `backend` says)."""
    from tests._postgres import fresh_database

    server, template = sample_knowledge_postgres
    with fresh_database(server, template=template) as url:
        deps = await Deps.create(make_settings(tmp_path, database_url=url), embedder=embedder)
        try:
            yield deps
        finally:
            await deps.aclose()


async def test_an_offline_turn_on_postgres(pg_knowledge: Deps) -> None:
    assert isinstance(pg_knowledge.store, PostgresStore)
    runner = TurnRunner(pg_knowledge)
    conversation, _ = await start_conversation(pg_knowledge.store)
    try:
        first = await runner.run(conversation.id, AUDREY_Q)
        second = await runner.run(conversation.id, CAROLE_Q)
    finally:
        await runner.aclose()
    assert first.agent == "audrey" and not first.escalated and first.error is None
    assert first.sources and {s["owner"] for s in first.sources} <= {"audrey", "shared"}
    assert second.agent == "carole"
    assert second.sources and {s["owner"] for s in second.sources} <= {"carole", "shared"}
    stored = await pg_knowledge.store.get_messages(conversation.id)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1].sources == first.sources and stored[3].agent == "carole"
    assert (await pg_knowledge.store.get_conversation(conversation.id)).messages == 4


@pytest.mark.parametrize("backend", ["sqlite"])  # knowledge_deps on SQLite, to compare with
async def test_dense_results_match_the_sqlite_store(
    pg_knowledge: Deps, knowledge_deps: Deps, embedder: LocalEmbedder
) -> None:
    async def top(deps: Deps, expert: str, vector) -> list[tuple[str, str, float]]:
        found = await deps.store.dense_search(expert, vector, 10, 0.0)
        passages = await deps.store.get_passages(expert, [cid for cid, _ in found])
        return [
            (p.filename, p.text, round(s, 4)) for p, (_, s) in zip(passages, found, strict=True)
        ]

    for question in (AUDREY_Q, CAROLE_Q, "Combien coûte l'accompagnement de l'agence ?"):
        vector = await embedder.embed_one(question)
        for expert in ("audrey", "carole"):
            assert await top(pg_knowledge, expert, vector) == await top(
                knowledge_deps, expert, vector
            )
