"""The parts one process needs, built once from Settings and passed around."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from copines.config import Settings
from copines.experts import Expert, load_experts, owner_choices
from copines.knowledge.ingest import Ingester
from copines.knowledge.ownership import OwnerTagger
from copines.knowledge.parsing import ParseLimits
from copines.knowledge.retrieval import Retriever
from copines.providers.chat import ChatClient
from copines.providers.embeddings import Embedder, build_embedder
from copines.providers.rerank import Reranker, build_reranker
from copines.store import create_store
from copines.store.base import Store

log = logging.getLogger("copines.parts")


def describe_parts(settings: Settings) -> list[str]:
    """One sentence per part saying what backs it, and how to change an offline default."""
    store = "postgres" if settings.resolved_database_url.startswith("postgres") else "sqlite"
    lines = [f"store: {store}"]
    if settings.llm_enabled:
        lines.append(f"chat: {settings.llm_base_url} (fallback {settings.fallback_model})")
    else:
        lines.append("chat: no OPENROUTER_API_KEY: answering offline; set it to use the models")
    if settings.use_openai_embeddings:
        lines.append(f"embeddings: {settings.embeddings_model}")
    else:
        lines.append("embeddings: local model; set OPENAI_API_KEY for OpenAI's")
    if settings.cohere_api_key is not None:
        lines.append(f"rerank: {settings.cohere_rerank_model}")
    else:
        lines.append("rerank: local; set COHERE_API_KEY for Cohere's")
    if settings.redis_url:
        lines.append("rate limits: Redis")
    else:
        lines.append("rate limits: in this process; set REDIS_URL to share them between workers")
    return lines


@dataclass
class Deps:
    settings: Settings
    experts: dict[str, Expert]
    store: Store
    embedder: Embedder
    reranker: Reranker
    retriever: Retriever
    tagger: OwnerTagger
    chat: ChatClient | None = None  # None: no model configured, the offline responder answers

    @classmethod
    async def create(cls, settings: Settings, *, embedder: Embedder | None = None) -> Deps:
        """Load the experts, open the store, build the providers."""
        experts = load_experts(settings.experts_dir)
        store = create_store(settings)
        await store.open()
        await store.register_owners(owner_choices(experts))
        embedder = embedder or build_embedder(settings)
        reranker = build_reranker(settings)
        retriever = Retriever(
            store,
            embedder,
            reranker,
            list(experts),
            candidates=settings.candidates,
            top_k=settings.top_k,
            threshold=settings.match_threshold,
        )
        tagger = OwnerTagger(experts, embedder, settings.shared_patterns)
        chat = ChatClient.from_settings(settings) if settings.llm_enabled else None
        for line in describe_parts(settings):
            log.info("%s", line)
        return cls(settings, experts, store, embedder, reranker, retriever, tagger, chat=chat)

    def ingester(self) -> Ingester:
        return Ingester(
            self.store,
            self.embedder,
            self.experts,
            self.tagger,
            ParseLimits.from_settings(self.settings),
        )

    async def aclose(self) -> None:
        if self.chat is not None:
            await self.chat.aclose()
        await self.reranker.aclose()
        await self.embedder.aclose()
        await self.store.close()
