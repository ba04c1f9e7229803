"""What the classifier reads: the message, the recent history, and how each expert matches.

Two kinds of features:
- shared by every class (`x`): the message's embedding, the embedding of the conversation's
  last turns, hashed character n-grams and words of the message, and a few counts;
- per expert (`g[k]`, one row per expert, read with weights shared by all experts): whether
  she answered last, how close the message is to her exemplars and profile, and how well her
  own knowledge base matches it, each relative to the other experts. Because these weights
  are shared, a new document in Audrey's base or a new expert file moves the decision without
  retraining.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from copines.text import fold

HASH_DIM = 4096
NGRAMS = (3, 4, 5)
EXTRA = (
    "has_history",
    "log_words",
    "question",
    "prev_none",
    "prev_escalate",
    "prev_assistant",
    "knowledge",
)
KNOWLEDGE_GAIN = 5.0  # a best match 0.1 over the floor reads 0.5, like the other extras
EXPERT_FEATURES = ("previous", "exemplars", "profile", "evidence_top", "evidence_mean")


@dataclass
class Inputs:
    """One message to classify, with what the router knows around it."""

    message: str
    vector: np.ndarray  # the message's embedding
    context: np.ndarray | None = None  # the recent history's embedding (None: no history)
    previous: str | None = None  # who answered last: an expert id, escalate, assistant
    exemplars: dict[str, float] = field(default_factory=dict)  # expert -> top-3 exemplar sim
    profile: dict[str, float] = field(default_factory=dict)  # expert -> profile sim
    # expert -> (top, mean top-3) of her own documents' matches (the shared ones left out:
    # they match every expert alike)
    evidence: dict[str, tuple[float, float]] = field(default_factory=dict)
    knowledge: float = 0.0  # the best match of any base, shared documents included


def hashed(text: str) -> dict[int, float]:
    """Character n-grams (with word boundaries) and words, hashed; L2-normalised tf."""
    folded = " ".join(fold(text).replace("’", "'").split())
    padded = f" {folded} "
    counts: dict[int, float] = {}
    for n in NGRAMS:
        for i in range(len(padded) - n + 1):
            h = zlib.crc32(padded[i : i + n].encode()) % HASH_DIM
            counts[h] = counts.get(h, 0.0) + 1.0
    tokens = [t.strip(".,;:!?()\"'«»") for t in folded.split()]
    for token in tokens:
        if len(token) > 1:
            h = zlib.crc32(b"w:" + token.encode()) % HASH_DIM
            counts[h] = counts.get(h, 0.0) + 2.0
    if not counts:
        return {}
    for h, c in counts.items():
        counts[h] = 1.0 + math.log(c)
    norm = math.sqrt(sum(v * v for v in counts.values()))
    return {h: v / norm for h, v in counts.items()}


@dataclass(frozen=True)
class Layout:
    """Where each block sits in the shared feature vector."""

    dim: int  # the embedding size (0: no embedding block)
    use_context: bool = True

    @property
    def size(self) -> int:
        return self.dim * (2 if self.use_context else 1) + HASH_DIM + len(EXTRA)

    @property
    def hash_offset(self) -> int:
        return self.dim * (2 if self.use_context else 1)


def shared_features(inputs: Inputs, layout: Layout, floor: float | None = None) -> np.ndarray:
    """The dense vector `x` (length `layout.size`).

    `floor`: the evidence floor; with it, how far the best match of any knowledge base (shared
    documents included) rises above it is read by every class, so a question the documents
    answer is drawn away from a hand-off even when both experts' bases hold the answer.
    None: no knowledge-base evidence.
    """
    x = np.zeros(layout.size, dtype=np.float32)
    if layout.dim:
        x[: layout.dim] = inputs.vector
        if layout.use_context and inputs.context is not None:
            x[layout.dim : 2 * layout.dim] = inputs.context
    off = layout.hash_offset
    for h, v in hashed(inputs.message).items():
        x[off + h] = v
    off += HASH_DIM
    n_words = len(inputs.message.split())
    prev = inputs.previous
    extras = (
        float(inputs.context is not None),
        math.log1p(n_words) / 4.0,
        float("?" in inputs.message),
        float(prev is None),
        float(prev == "escalate"),
        float(prev == "assistant"),
        0.0 if floor is None else KNOWLEDGE_GAIN * max(inputs.knowledge - floor, 0.0),
    )
    x[off : off + len(EXTRA)] = extras
    return x


def expert_features(
    inputs: Inputs, experts: list[str], scale: dict[str, float], use_evidence: bool = True
) -> np.ndarray:
    """The per-expert rows `g` (len(experts) x len(EXPERT_FEATURES)), centred over experts.

    `scale`: the spread of each similarity for the embedder in use, so the weights learnt with
    one embedder read the same with another.
    """
    g = np.zeros((len(experts), len(EXPERT_FEATURES)), dtype=np.float32)
    if not experts:
        return g
    g[:, 0] = [float(inputs.previous == e) for e in experts]
    columns = [
        ("exemplars", [inputs.exemplars.get(e, 0.0) for e in experts]),
        ("profile", [inputs.profile.get(e, 0.0) for e in experts]),
    ]
    if use_evidence:
        # Only what rises above the embedder's match threshold counts: under it, a base
        # "matching" a message is noise (a plain max-similarity feature cost accuracy).
        floor = scale.get("floor", 0.0)
        columns += [
            (
                "evidence_top",
                [max(inputs.evidence.get(e, (0.0, 0.0))[0] - floor, 0.0) for e in experts],
            ),
            (
                "evidence_mean",
                [max(inputs.evidence.get(e, (0.0, 0.0))[1] - floor, 0.0) for e in experts],
            ),
        ]
    for name, values in columns:
        column = np.asarray(values, dtype=np.float32)
        j = EXPERT_FEATURES.index(name)
        g[:, j] = (column - column.mean()) / max(scale.get(name, 1.0), 1e-6)
    return g
