"""A learnt reading of sentiment and buying intent, from the message's embedding and the lexicon.

Two small logistic regressions (sentiment: negative, neutral, positive; upsell: yes or no)
over the message's embedding and four lexicon features (the cue lists of `postprocess`). They
are fit on the labelled training part the package ships (`copines/eval/train/postprocess*.jsonl`)
and kept in `signals.npz` with the id of the embedder whose vectors they read: with another
embedder they do not apply and the lexicon alone decides.

    python -m copines.signals            # fit again from the training part (local embedder)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

SENTIMENTS = ("negative", "neutral", "positive")
MODEL_FILE = "signals.npz"
SCALE = 3.0  # inputs scaled up so that a few hundred steps of plain gradient descent converge
L2 = 3e-3
STEPS = 800
RATE = 0.5


def lexicon_features(message: str) -> np.ndarray:
    """What the hand-written cues say: negative (or a complaint), positive, buying intent,
    complaint."""
    from copines.postprocess import complaint, sentiment, upsell_trigger

    mood, grievance = sentiment(message), complaint(message)
    return np.array(
        [
            mood == "negative" or bool(grievance),
            mood == "positive",
            bool(upsell_trigger(message)) and not grievance,
            bool(grievance),
        ],
        dtype=np.float32,
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent (deterministic)."""
    n, d = x.shape
    w, b = np.zeros((d, y.shape[1])), np.zeros(y.shape[1])
    for _ in range(STEPS):
        g = _softmax(x @ w + b) - y
        w -= RATE * (x.T @ g / n + L2 * w)
        b -= RATE * g.mean(axis=0)
    return w.astype(np.float32), b.astype(np.float32)


@dataclass
class SignalModel:
    embedder_id: str
    sentiment_w: np.ndarray
    sentiment_b: np.ndarray
    upsell_w: np.ndarray
    upsell_b: np.ndarray

    def _inputs(self, message: str, vector: np.ndarray) -> np.ndarray:
        return SCALE * np.concatenate([np.asarray(vector, np.float32), lexicon_features(message)])

    def applies_to(self, vector: np.ndarray) -> bool:
        return vector is not None and len(vector) + 4 == self.sentiment_w.shape[0]

    def sentiment(self, message: str, vector: np.ndarray) -> tuple[str, float]:
        """The most likely sentiment and its probability."""
        p = _softmax(self._inputs(message, vector) @ self.sentiment_w + self.sentiment_b)
        i = int(p.argmax())
        return SENTIMENTS[i], float(p[i])

    def upsell(self, message: str, vector: np.ndarray) -> float:
        """The probability that the message shows buying intent or a need for deeper help."""
        p = _softmax(self._inputs(message, vector) @ self.upsell_w + self.upsell_b)
        return float(p[1])

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            embedder_id=np.array(self.embedder_id),
            sentiment_w=self.sentiment_w,
            sentiment_b=self.sentiment_b,
            upsell_w=self.upsell_w,
            upsell_b=self.upsell_b,
        )


@lru_cache(maxsize=1)
def default_model() -> SignalModel | None:
    """The model the package ships (None when it is missing)."""
    source = resources.files("copines") / MODEL_FILE
    if not source.is_file():
        return None
    with source.open("rb") as handle, np.load(handle) as data:
        return SignalModel(
            str(data["embedder_id"]),
            data["sentiment_w"],
            data["sentiment_b"],
            data["upsell_w"],
            data["upsell_b"],
        )


def training_rows() -> list[dict]:
    """The labelled lines of the training part the package ships."""
    folder = resources.files("copines") / "eval" / "train"
    rows = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith("postprocess") and entry.name.endswith(".jsonl"):
            rows += [json.loads(x) for x in entry.read_text("utf-8").splitlines() if x.strip()]
    return rows


async def fit(rows: list[dict], embedder) -> SignalModel:
    """Both regressions, fit on `rows` ({message, sentiment, upsell}) with `embedder`."""
    vectors = np.asarray(await embedder.embed([r["message"] for r in rows]), np.float32)
    lexicon = np.stack([lexicon_features(r["message"]) for r in rows])
    x = SCALE * np.hstack([vectors, lexicon])
    ys = np.array([[r["sentiment"] == s for s in SENTIMENTS] for r in rows], np.float64)
    yu = np.array([[not r["upsell"], bool(r["upsell"])] for r in rows], np.float64)
    sw, sb = _fit(x, ys)
    uw, ub = _fit(x, yu)
    return SignalModel(embedder.id, sw, sb, uw, ub)


def main() -> None:
    from copines.providers.embeddings import LocalEmbedder

    rows = training_rows()
    model = asyncio.run(fit(rows, LocalEmbedder(threads=2)))
    target = Path(str(resources.files("copines") / MODEL_FILE))
    model.save(target)
    print(f"fit on {len(rows)} labelled messages; written to {target}")


if __name__ == "__main__":
    main()
