"""Which knowledge base a document belongs to: by filename, else by content."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from copines.experts import SHARED, Expert
from copines.providers.embeddings import Embedder, normalise
from copines.text import fold


@dataclass
class OwnerDecision:
    owner: str
    reason: str
    method: str  # explicit | filename | content | close


class OwnerTagger:
    """Tags documents with an owner, following the agency's rules.

    1. The filename: the agency's patterns (in each expert file), the expert's id, or a
       shared pattern. One owner matching decides.
    2. Otherwise the content: the document's mean embedding against each expert's
       profile (her description and expertise, and the centroid of her exemplars).
    3. Too close to call (margin under `margin`): shared.
    """

    def __init__(
        self,
        experts: dict[str, Expert],
        embedder: Embedder,
        shared_patterns: list[str],
        margin: float = 0.05,
    ):
        self.experts = experts
        self.embedder = embedder
        self.shared_patterns = [fold(p) for p in shared_patterns]
        self.margin = margin
        self._profiles: dict[str, np.ndarray] | None = None

    def by_filename(self, filename: str) -> OwnerDecision | None:
        name = fold(filename)
        hits: dict[str, str] = {}
        for expert in self.experts.values():
            for pattern in [*expert.filename_patterns, expert.id]:
                if fold(pattern) in name:
                    hits.setdefault(expert.id, pattern)
        for pattern in self.shared_patterns:
            if pattern in name:
                hits.setdefault(SHARED, pattern)
        if len(hits) == 1:
            owner, pattern = next(iter(hits.items()))
            return OwnerDecision(owner, f"filename contains '{pattern}'", "filename")
        return None

    async def profiles(self) -> dict[str, np.ndarray]:
        if self._profiles is None:
            profiles = {}
            for expert in self.experts.values():
                about = expert.description + " " + " ; ".join(expert.expertise)
                vectors = await self.embedder.embed([about, *expert.exemplars])
                centroid = normalise(vectors[1:].mean(axis=0, keepdims=True))[0]
                profiles[expert.id] = normalise((vectors[0] + centroid)[None, :])[0]
            self._profiles = profiles
        return self._profiles

    async def by_content(self, chunk_vectors: np.ndarray) -> OwnerDecision:
        """Decide from the document's chunk embeddings."""
        profiles = await self.profiles()
        doc = normalise(chunk_vectors.mean(axis=0, keepdims=True))[0]
        scores = sorted(
            ((float(doc @ vector), owner) for owner, vector in profiles.items()), reverse=True
        )
        best_score, best = scores[0]
        runner_up = scores[1][0] if len(scores) > 1 else -1.0
        detail = ", ".join(f"{owner} {score:.2f}" for score, owner in scores)
        if best_score - runner_up < self.margin:
            return OwnerDecision(SHARED, f"content too close to call ({detail})", "close")
        return OwnerDecision(best, f"content closest to {best} ({detail})", "content")
