"""Rerankers: local (default, offline) and Cohere rerank over HTTP with a local fallback."""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import replace
from functools import lru_cache

import httpx

from copines.config import Settings
from copines.errors import ProviderError
from copines.providers import spend
from copines.providers.http import post_json
from copines.store.base import Passage
from copines.text import stem, words

log = logging.getLogger("copines.rerank")


class Reranker(ABC):
    """Orders candidate passages for a query and keeps the best `top_n`."""

    name: str

    @abstractmethod
    async def rerank(self, query: str, passages: list[Passage], top_n: int) -> list[Passage]:
        """The best `top_n` passages, best first, each with its `score` set."""

    async def aclose(self) -> None:
        """Release network clients, if any."""


@lru_cache(maxsize=16384)
def _stems(text: str) -> frozenset[str]:
    """A passage's stems; cached because the same passages come back query after query, and
    folding them costs milliseconds on the event loop."""
    return frozenset(stem(w) for w in words(text))


# A question that asks for a quantity: how many, how long, what rate, what size...
_ASKS_FIGURE = re.compile(
    r"\b(combien|quel(?:le)?s? (?:taux|taille|duree|delai|frequence|nombre|pourcentage|"
    r"budget|prix|format|longueur|dimension)|a quelle frequence|tous les combien|"
    r"(?:taux|taille|duree|delai|frequence|nombre|pourcentage|longueur|dimensions?) "
    r"(?:de|d'|du|des|ideal\w*|normal\w*|moyen\w*|conseill\w*|max\w*|min\w*))"
)
# A figure with what it counts: "7 à 10 jours", "125 caractères", "3 %", "1080 x 1350".
_FIGURE = re.compile(
    r"\d+(?:[.,]\d+)?\s*(?:(?:a|à|-|x|×)\s*\d+|%|€|euros?\b|jours?\b|j\b|semaines?\b|"
    r"mois\b|ans?\b|heures?\b|h\b|minutes?\b|min\b|secondes?\b|s\b|caracteres\b|"
    r"caractères\b|mots\b|slides?\b|pages?\b|fois\b|emails?\b|posts?\b|publications?\b|"
    r"abonne\w*|abonné\w*|px\b|pixels?\b|participantes?\b|contacts?\b|"
    r"piliers?\b|stories\b|reels?\b|hashtags?\b)",
    re.IGNORECASE,
)


def asks_figure(query: str) -> bool:
    """Whether the question asks for a quantity (a number, a duration, a rate, a size)."""
    from copines.text import fold

    return bool(_ASKS_FIGURE.search(fold(query)))


def holds_figure(text: str) -> bool:
    """Whether the text gives a figure with what it counts (not a step's number)."""
    return bool(_FIGURE.search(text))


class LocalReranker(Reranker):
    """Blends the dense similarity with how much of the question the passage covers.

    Fused search finds candidates that either mean or say the same thing; this
    prefers those that do both, rewards a heading that names the topic, and a high place
    in the keyword search's ranking (its bm25 sees rare words the coverage counts like any).
    A question that asks for a quantity ("combien de slides ?") prefers the passages that
    give one, in their text or their heading ("La structure en 7 à 10 slides").
    """

    name = "local"

    def __init__(
        self,
        lexical_weight: float = 0.25,
        heading_weight: float = 0.1,
        keyword_weight: float = 0.05,
        figure_weight: float = 0.1,
    ):
        self.figure_weight = figure_weight
        self.lexical_weight = lexical_weight
        self.heading_weight = heading_weight
        self.keyword_weight = keyword_weight

    @staticmethod
    def _coverage(terms: set[str], text: str) -> float:
        if not terms:
            return 0.0
        stems = _stems(text)
        return sum(1 for t in terms if t in stems) / len(terms)

    async def rerank(self, query: str, passages: list[Passage], top_n: int) -> list[Passage]:
        from copines.text import search_terms

        terms = set(search_terms(query))
        figure = self.figure_weight if asks_figure(query) else 0.0
        scored = []
        for passage in passages:
            score = (
                passage.dense_score
                + self.lexical_weight * self._coverage(terms, passage.text)
                + self.heading_weight * self._coverage(terms, passage.heading_path)
            )
            if passage.keyword_rank is not None:
                score += self.keyword_weight / (1 + passage.keyword_rank)
            if figure and holds_figure(f"{passage.heading_path}\n{passage.text}"):
                score += figure
            scored.append(replace(passage, score=round(float(score), 4)))
        scored.sort(key=lambda p: p.score, reverse=True)
        return scored[:top_n]


class CohereReranker(Reranker):
    """Cohere's rerank API (`rerank-multilingual-v3.0`); the local reranker answers on failure."""

    name = "cohere"

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "rerank-multilingual-v3.0",
        base_url: str = "https://api.cohere.com",
        timeout: float = 3.0,
        retries: int = 1,
        fallback: Reranker | None = None,
        price_per_1000: float | None = 2.0,
    ):
        self.model = model
        self.price_per_1000 = price_per_1000
        self._url = base_url.rstrip("/") + "/v2/rerank"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._retries = retries
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=2.0))
        self.fallback = fallback or LocalReranker()
        self.fallbacks = 0  # how many times the local reranker had to answer

    async def rerank(self, query: str, passages: list[Passage], top_n: int) -> list[Passage]:
        if not passages:
            return []
        payload = {
            "model": self.model,
            "query": query,
            "documents": [p.embed_text() for p in passages],
            "top_n": min(top_n, len(passages)),
        }
        try:
            body = await post_json(
                self._client,
                self._url,
                payload,
                provider="cohere",
                headers=self._headers,
                retries=self._retries,
            )
            results = body["results"]
            billed = (body.get("meta") or {}).get("billed_units") or {}
            searches = billed.get("search_units") if isinstance(billed, dict) else None
            searches = searches if isinstance(searches, int | float) else 1
            price = self.price_per_1000
            spend.add_rerank(int(searches), searches * price / 1000 if price is not None else None)
            ranked = [
                replace(passages[int(r["index"])], score=round(float(r["relevance_score"]), 4))
                for r in results
            ]
        except (ProviderError, KeyError, TypeError, ValueError, IndexError) as exc:
            self.fallbacks += 1
            log.warning("cohere rerank failed (%s); using the local reranker", exc)
            return await self.fallback.rerank(query, passages, top_n)
        ranked.sort(key=lambda p: p.score, reverse=True)
        return ranked[:top_n]

    async def aclose(self) -> None:
        await self._client.aclose()


def build_reranker(settings: Settings) -> Reranker:
    """Cohere when COHERE_API_KEY is set, else the local reranker."""
    if settings.cohere_api_key is not None:
        return CohereReranker(
            api_key=settings.cohere_api_key.get_secret_value(),
            model=settings.cohere_rerank_model,
            base_url=settings.cohere_base_url,
            timeout=settings.rerank_timeout,
            price_per_1000=settings.rerank_price_per_1000,
        )
    return LocalReranker()
