"""A local server speaking OpenAI's embeddings API: `POST /embeddings`.

Request: {"model", "input": str | [str, ...], "dimensions"?, "encoding_format"?} with
`Authorization: Bearer KEY`. Answer: {"object": "list", "data": [{"object": "embedding",
"index", "embedding": [...]}], "model", "usage"}.

The vectors are real enough to search with: each text's folded, stemmed words are hashed
(with a sign) into `dimensions` buckets and the result is L2-normalised, so texts sharing
words have a high cosine. Deterministic across processes (sha1, not Python's hash).
"""

from __future__ import annotations

import hashlib

import numpy as np

from copines.text import stem, words
from tests.fakes import FakeServer, Recorded, Reply


def hashed_embedding(text: str, dimensions: int) -> list[float]:
    """A bag-of-words vector of `text` in `dimensions` signed buckets, L2-normalised."""
    vector = np.zeros(dimensions, dtype=np.float64)
    for token in words(text):
        digest = hashlib.sha1(stem(token).encode()).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = np.linalg.norm(vector)
    if norm == 0:
        vector[0] = 1.0
        norm = 1.0
    return (vector / norm).round(6).tolist()


class FakeOpenAIEmbeddings(FakeServer):
    """OpenAI-compatible `/embeddings` (the path may sit under a `/v1` base URL)."""

    name = "openai-embeddings"

    def __init__(
        self,
        api_key: str = "test-openai-key",
        default_dimensions: int = 1536,
        max_inputs: int = 2048,
    ):
        super().__init__()
        self.api_key = api_key
        self.default_dimensions = default_dimensions
        self.max_inputs = max_inputs

    @property
    def batches(self) -> list[int]:
        """How many texts each embeddings request carried, in order."""
        sizes = []
        for request in self.requests:
            data = request.json.get("input") if isinstance(request.json, dict) else None
            sizes.append(len(data) if isinstance(data, list) else 1)
        return sizes

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or not request.path.endswith("/embeddings"):
            return Reply(status=404, json={"error": {"message": f"no route {request.path}"}})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(
                status=401,
                json={
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                    }
                },
            )
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return Reply(status=400, json={"error": {"message": "'model' is required"}})
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return Reply(
                status=400, json={"error": {"message": "'input' must be a string or a list"}}
            )
        if len(texts) > self.max_inputs:
            return Reply(status=400, json={"error": {"message": "too many inputs"}})
        dimensions = body.get("dimensions", self.default_dimensions)
        if not isinstance(dimensions, int) or dimensions < 1:
            return Reply(status=400, json={"error": {"message": "'dimensions' must be positive"}})
        tokens = sum(len(t.split()) for t in texts)
        return Reply(
            json={
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": hashed_embedding(t, dimensions),
                    }
                    for i, t in enumerate(texts)
                ],
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
