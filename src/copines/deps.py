"""The parts one process needs, built once from Settings and passed around."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from copines.config import Settings
from copines.experts import Expert, load_experts, owner_choices
from copines.knowledge.ingest import Ingester
from copines.knowledge.ownership import OwnerTagger
from copines.knowledge.parsing import ParseLimits
from copines.knowledge.retrieval import Retriever
from copines.privacy import PrivacyKeys, load_keys
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


def email_link_warnings(settings: Settings) -> list[str]:
    """With email on, the links it carries must reach the public site and console: a URL
    still on this machine would send visitors and the team to nowhere."""
    if not settings.smtp_url:
        return []
    warnings = []
    for name, url in (
        ("COPINES_SITE_URL", settings.site_url),
        ("COPINES_CONSOLE_URL", settings.console_url),
    ):
        host = (urlsplit(url).hostname or "").lower()
        if host in ("localhost", "::1") or host.startswith("127.") or host.endswith(".localhost"):
            warnings.append(
                f"email is on (COPINES_SMTP_URL) but {name} is {url}: the links in the emails "
                f"lead to this machine; set {name} to its public address"
            )
    return warnings


@dataclass
class Deps:
    settings: Settings
    experts: dict[str, Expert]
    store: Store
    embedder: Embedder
    reranker: Reranker
    retriever: Retriever
    tagger: OwnerTagger
    keys: PrivacyKeys
    chat: ChatClient | None = None  # None: no model configured, the offline responder answers

    @classmethod
    async def create(cls, settings: Settings, *, embedder: Embedder | None = None) -> Deps:
        """Load the experts, open the store, build the providers."""
        experts = load_experts(settings.experts_dir)
        store = create_store(settings)
        await store.open()
        await store.register_owners(owner_choices(experts))
        keys = await load_keys(store, settings)
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
        for warning in email_link_warnings(settings):
            log.warning("%s", warning)
        return cls(settings, experts, store, embedder, reranker, retriever, tagger, keys, chat=chat)

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
