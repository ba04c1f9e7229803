"""Embeddings and rerank spend is counted against the turn that made the calls."""

from __future__ import annotations

import asyncio

from tests.fakes.cohere import FakeCohere
from tests.fakes.openai_embeddings import FakeOpenAIEmbeddings
from tests.providers.test_rerank import PASSAGES, QUERY

from copines.providers import spend
from copines.providers.embeddings import OpenAIEmbedder
from copines.providers.rerank import CohereReranker


async def test_each_turn_is_charged_its_own_embeddings_and_rerank():
    with FakeOpenAIEmbeddings(api_key="k-emb") as emb, FakeCohere(api_key="k-co") as co:
        embedder = OpenAIEmbedder(
            api_key="k-emb", base_url=emb.url + "/v1", dimensions=64, price_per_million=0.02
        )
        reranker = CohereReranker(api_key="k-co", base_url=co.url, price_per_1000=2.0)

        async def turn(text: str) -> spend.Spend:
            spent = spend.start()
            await embedder.embed_one(text)
            await reranker.rerank(QUERY, PASSAGES, 2)
            return spent

        short, long = await asyncio.gather(turn("Bonjour"), turn("Une question " * 50))
        await embedder.aclose()
        await reranker.aclose()
    # Turns running at once (their messages in one batch) are each charged their own share.
    assert 0 < short.embedding_tokens < long.embedding_tokens
    assert long.embedding_cost_usd == long.embedding_tokens * 0.02 / 1_000_000
    for spent in (short, long):
        assert spent.rerank_searches == 1 and spent.rerank_cost_usd == 0.002
