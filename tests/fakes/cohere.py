"""A local server speaking Cohere's rerank API: `POST /v2/rerank`.

Request: {"model", "query", "documents": [str, ...], "top_n"}, `Authorization: Bearer KEY`.
Answer: {"id", "results": [{"index", "relevance_score"}, ...], "meta"}, best first, at most
`top_n`. Scores are the share of the query's words found in the document, unless a test sets
`scores` (a function of (query, documents) returning one score per document).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from copines.text import stem, words
from tests.fakes import FakeServer, Recorded, Reply

ScoreFn = Callable[[str, list[str]], list[float]]


def overlap_scores(query: str, documents: list[str]) -> list[float]:
    """Share of the query's (stemmed) words present in each document, in [0, 1]."""
    terms = {stem(w) for w in words(query) if len(w) > 2}
    out = []
    for doc in documents:
        present = {stem(w) for w in words(doc)}
        out.append(len(terms & present) / len(terms) if terms else 0.0)
    return out


class FakeCohere(FakeServer):
    """Cohere's `/v2/rerank`, checking the request like the real service does."""

    name = "cohere"

    def __init__(self, api_key: str = "test-cohere-key", scores: ScoreFn | None = None):
        super().__init__()
        self.api_key = api_key
        self.scores: ScoreFn = scores or overlap_scores

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != "/v2/rerank":
            return Reply(status=404, json={"message": f"no route {request.path}"})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(status=401, json={"message": "invalid api token"})
        body = request.json
        if not isinstance(body, dict):
            return Reply(status=400, json={"message": "invalid request: body must be JSON"})
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(body.get("model"), str) or not isinstance(query, str):
            return Reply(status=400, json={"message": "invalid request: model and query"})
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            return Reply(status=400, json={"message": "invalid request: documents"})
        top_n = body.get("top_n", len(documents))
        if not isinstance(top_n, int) or top_n < 1:
            return Reply(status=400, json={"message": "invalid request: top_n"})
        scores = self.scores(query, documents)
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[:top_n]
        return Reply(
            json={
                "id": str(uuid.uuid4()),
                "results": [{"index": i, "relevance_score": float(scores[i])} for i in order],
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            }
        )
