"""Owner-isolated hybrid retrieval: dense + keyword, fused, reranked."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from copines.errors import NotFoundError
from copines.providers.embeddings import Embedder
from copines.providers.rerank import Reranker
from copines.store.base import Passage, Store
from copines.store.sqlite import mismatch_error
from copines.text import fold, search_terms

T = TypeVar("T")

RRF_K = 60

# What visitors abbreviate or say in English, and the words the documents use instead: the
# expansion only feeds the word-matching parts (keyword search, reranker, offline answer).
ABBREVIATIONS = {
    "rdv": "rendez-vous",
    "insta": "instagram",
    "ig": "instagram",
    "mail": "email",
    "mails": "emails",
    "dm": "messages privés",
    "dms": "messages privés",
    "mp": "message privé",
    "pb": "problème",
    "stats": "statistiques",
    "abo": "abonnées",
    "abos": "abonnées",
    "pub": "publicité",
    "pubs": "publicités",
    "cta": "appel à l'action",
    "tuto": "tutoriel",
    "newsletter": "newsletter email",
    "funnel": "tunnel",
    "funnels": "tunnels",
    "landing": "page",
    "optin": "inscription",
    "opt-in": "inscription",
    "followers": "abonnées",
    "follower": "abonnée",
    "feed": "fil",
    "post": "publication",
    "posts": "publications",
    "caption": "légende",
    "captions": "légendes",
    "hashtag": "hashtags",
}
_TOKEN = re.compile(r"[\w'-]+", re.UNICODE)


def lexical_query(query: str) -> str:
    """The question with the documents' words added after the visitor's abbreviations."""
    extra = [
        ABBREVIATIONS[word]
        for word in dict.fromkeys(_TOKEN.findall(fold(query)))
        if word in ABBREVIATIONS
    ]
    return f"{query} {' '.join(extra)}" if extra else query


@dataclass
class RetrievalResult:
    expert: str
    passages: list[Passage]
    candidates: int  # how many fused candidates went to the reranker
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def best_score(self) -> float:
        return max((p.score for p in self.passages), default=0.0)


def fuse(dense: list[tuple[int, float]], keyword: list[int], limit: int) -> list[int]:
    """Reciprocal rank fusion of the two rankings; returns chunk ids, best first."""
    scores: dict[int, float] = {}
    for rank, (chunk_id, _) in enumerate(dense):
        scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    for rank, chunk_id in enumerate(keyword):
        scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores, key=lambda cid: scores[cid], reverse=True)[:limit]


def diverse(ranked: list[Passage], k: int, per_document: int) -> list[Passage]:
    """The best `k` passages, at most `per_document` of one document while others remain."""
    chosen: list[Passage] = []
    later: list[Passage] = []
    counts: dict[str, int] = {}
    for passage in ranked:
        if len(chosen) == k:
            break
        if counts.get(passage.filename, 0) < per_document:
            chosen.append(passage)
            counts[passage.filename] = counts.get(passage.filename, 0) + 1
        else:
            later.append(passage)
    chosen += later[: k - len(chosen)]
    return chosen


class Retriever:
    """Finds an expert's best passages: only her documents and the shared ones."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        reranker: Reranker,
        experts: set[str] | list[str],
        *,
        candidates: int = 20,
        top_k: int = 3,
        threshold: float | None = None,
        per_document: int = 2,
    ):
        self.store = store
        self.embedder = embedder
        self.reranker = reranker
        self.experts = set(experts)
        self.candidates = candidates
        self.top_k = top_k
        self.threshold = embedder.default_threshold if threshold is None else threshold
        self.per_document = per_document

    async def search(
        self,
        expert: str,
        query: str,
        *,
        k: int | None = None,
        vector: np.ndarray | None = None,
    ) -> RetrievalResult:
        """The best `k` passages for `expert` (`vector`: the query's embedding, if known)."""
        if expert not in self.experts:
            raise NotFoundError(
                f"no expert '{expert}'; choose one of: {', '.join(sorted(self.experts))}"
            )
        timings: dict[str, float] = {}

        async def timed(name: str, work: Awaitable[T]) -> T:
            started = time.perf_counter()
            try:
                return await work
            finally:
                timings[name] = (time.perf_counter() - started) * 1000

        terms = search_terms(lexical_query(query))
        if vector is not None and self.store.searches_inline():
            # Both searches run on this thread without waiting on anything: a task to run
            # them side by side would only cost its own creation.
            keyword = await timed(
                "keyword", self.store.keyword_search(expert, terms, self.candidates)
            )
            dense = await timed(
                "dense", self.store.dense_search(expert, vector, self.candidates, self.threshold)
            )
            return await self._finish(expert, query, vector, dense, keyword, timings, k)
        # Keyword search needs no vector: it runs while the query is embedded, and the
        # vector scan (numpy, off the database thread) while it finishes.
        keyword_task = asyncio.create_task(
            timed(
                "keyword",
                self.store.keyword_search(expert, terms, self.candidates),
            )
        )
        try:
            if vector is None:
                vector = await timed("embed", self.embedder.embed_one(query))
            dense = await timed(
                "dense",
                self.store.dense_search(expert, vector, self.candidates, self.threshold),
            )
            keyword = await keyword_task
        finally:
            if not keyword_task.done():
                keyword_task.cancel()
            elif not keyword_task.cancelled():
                keyword_task.exception()  # seen: a failure here is not logged as lost
        return await self._finish(expert, query, vector, dense, keyword, timings, k)

    async def _finish(
        self,
        expert: str,
        query: str,
        vector: np.ndarray,
        dense: list[tuple[int, float]],
        keyword: list[int],
        timings: dict[str, float],
        k: int | None,
    ) -> RetrievalResult:
        """Fuse the two rankings, read the passages, rerank."""
        stored = self.store.embedder_id  # refreshed by the search when the chunks changed
        if stored is not None and stored != self.embedder.id:
            # Same size, another model: the scores would be noise.
            raise mismatch_error(stored, self.embedder.id)
        t3 = time.perf_counter()
        ids = fuse(dense, keyword, self.candidates)
        # The similarity floor holds for every candidate, whichever search found it: a
        # keyword hit the embedding finds unrelated to the question does not reach the expert.
        passages = [
            p
            for p in await self.store.get_passages(expert, ids, vector)
            if p.dense_score >= self.threshold
        ]
        dense_rank = {cid: i for i, (cid, _) in enumerate(dense)}
        keyword_rank = {cid: i for i, cid in enumerate(keyword)}
        for fused_rank, passage in enumerate(passages):
            passage.dense_rank = dense_rank.get(passage.chunk_id)
            passage.keyword_rank = keyword_rank.get(passage.chunk_id)
            passage.fused_score = 1.0 / (RRF_K + fused_rank + 1)
        t4 = time.perf_counter()
        k = k or self.top_k
        ranked = await self.reranker.rerank(lexical_query(query), passages, len(passages))
        ranked = diverse(ranked, k, self.per_document)
        t5 = time.perf_counter()
        timings.update(hydrate=(t4 - t3) * 1000, rerank=(t5 - t4) * 1000)
        return RetrievalResult(expert, ranked, len(passages), timings)
