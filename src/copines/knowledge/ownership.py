"""Which knowledge base a document belongs to: by filename, else by content."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import PurePath
from urllib.parse import unquote, urlsplit

import numpy as np

from copines.experts import SHARED, Expert
from copines.providers.embeddings import Embedder, normalise
from copines.text import fold


@dataclass
class OwnerDecision:
    owner: str
    reason: str
    method: str  # explicit | filename | url | content | close


def name_words(filename: str) -> str:
    """A filename as folded words joined by '-': "SalesFunnel_v2.PDF" -> "-sales-funnel-v2-"."""
    stem = PurePath(filename).stem
    stem = re.sub(r"([a-z])([A-Z])", r"\1-\2", stem)
    return "-" + "-".join(re.findall(r"[a-z0-9]+", fold(stem))) + "-"


def pattern_in(pattern: str, name: str) -> bool:
    """Whether `pattern` starts a word of `name` and ends it (a plural or -ing may follow).

    The agency's rule is `filename LIKE '%pattern%'`; matching whole words keeps its intent
    ("reels", "emailing", "funnels") without "insta" tagging "installation" or "content"
    tagging "mecontentement".
    """
    rule = _pattern_rule(pattern)
    return rule is not None and rule.search(name) is not None


@lru_cache(maxsize=1024)
def _pattern_rule(pattern: str) -> re.Pattern[str] | None:
    words = "-".join(re.findall(r"[a-z0-9]+", fold(pattern)))
    return re.compile(rf"-{re.escape(words)}(?:s|x|es|ing|ings)?-") if words else None


class OwnerTagger:
    """Tags documents with an owner, following the agency's rules.

    1. The filename: the agency's patterns (in each expert file), the expert's id, or a
       shared pattern. One owner matching decides.
    2. Otherwise the content: the document's mean embedding against each expert's
       profile (her description and expertise, and the centroid of her exemplars).
    3. Too close to call (margin under `margin`), or close to no expert at all (best
       similarity under `min_score`): shared, and the reason says so.

    The defaults fit the local USE embedder on the sample knowledge: a clearly-Audrey or
    clearly-Carole note scores 0.45-0.55 against her profile and 0.15-0.25 against the other;
    a note on accounting scored 0.22 at best, a recipe 0.08.
    """

    def __init__(
        self,
        experts: dict[str, Expert],
        embedder: Embedder,
        shared_patterns: list[str],
        margin: float = 0.05,
        min_score: float = 0.3,
    ):
        self.experts = experts
        self.embedder = embedder
        self.shared_patterns = [fold(p) for p in shared_patterns]
        self.margin = margin
        self.min_score = min_score
        self._profiles: dict[str, np.ndarray] | None = None

    def by_filename(self, filename: str) -> OwnerDecision | None:
        name = name_words(filename)
        hits: dict[str, str] = {}
        for expert in self.experts.values():
            for pattern in [*expert.filename_patterns, expert.id]:
                if pattern_in(pattern, name):
                    hits.setdefault(expert.id, pattern)
        for pattern in self.shared_patterns:
            if pattern_in(pattern, name):
                hits.setdefault(SHARED, pattern)
        if len(hits) == 1:
            owner, pattern = next(iter(hits.items()))
            return OwnerDecision(owner, f"filename contains '{pattern}'", "filename")
        return None

    def by_url(self, url: str) -> OwnerDecision | None:
        """The expert whose `url_patterns` match the address; None when none or several do."""
        hits: dict[str, str] = {}
        for expert in self.experts.values():
            for pattern in expert.url_patterns:
                if url_matches(pattern, url):
                    hits.setdefault(expert.id, pattern)
        if len(hits) == 1:
            owner, pattern = next(iter(hits.items()))
            return OwnerDecision(owner, f"address matches '{pattern}'", "url")
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
        if best_score < self.min_score:
            return OwnerDecision(
                SHARED, f"content close to no expert, too close to call ({detail})", "close"
            )
        if best_score - runner_up < self.margin:
            return OwnerDecision(SHARED, f"content too close to call ({detail})", "close")
        return OwnerDecision(best, f"content closest to {best} ({detail})", "content")


def url_matches(pattern: str, url: str) -> bool:
    """Whether a glob matches the URL's path, or the whole URL (without scheme) when the
    pattern names a host ("agence.fr/blog/*"); case-insensitive."""
    parts = urlsplit(url)
    path = unquote(parts.path or "/").lower()
    pattern = pattern.strip().lower()
    if pattern.startswith("/"):
        return fnmatchcase(path, pattern)
    whole = f"{(parts.hostname or '').lower()}{path}"
    return fnmatchcase(whole, pattern.split("://", 1)[-1])
