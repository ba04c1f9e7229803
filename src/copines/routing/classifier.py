"""The learnt router: a multinomial logistic regression in numpy, and its shipped weights.

Each class has its own weights over the shared features; the experts' classes add a score
from per-expert features read with one weight vector for all experts (see `features`). An
expert the model was not trained with (a new file in `experts_dir`) gets the mean of the known
experts' own weights, so she is chosen by what distinguishes her: her exemplars, her profile
and her knowledge base.

Probabilities are calibrated by a temperature fit on the dev part.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from copines.experts import ESCALATE
from copines.routing.decision import ASSISTANT
from copines.routing.features import EXPERT_FEATURES, Layout

MODEL_PATH = Path(__file__).with_name("model.npz")
LEXICAL_PATH = Path(__file__).with_name("model-lexical.npz")  # for another embedder
BASE_CLASSES = (ASSISTANT, ESCALATE)
# A hand-off is learnt as several classes, one per reason (a linear model draws one region
# per class: emergencies and insults have little in common); their probabilities add up.
ESCALATION_KINDS = {
    "emergency": "emergency",
    "medical": "medical",
    "legal": "legal",
    "payment": "payment",
    "access": "payment",
    "injection": "injection",
    "complaint": "complaint",
    "human_request": "human_request",
    "human": "human_request",
}


def escalation_class(kind: str | None) -> str:
    """The class of a labelled hand-off: escalate/<reason>."""
    return f"{ESCALATE}/{ESCALATION_KINDS.get(kind or '', 'out_of_scope')}"


@dataclass
class Model:
    """Weights and settings of one trained router."""

    classes: tuple[str, ...]  # assistant, escalate/<reason>..., then the experts
    weights: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)
    expert_weights: np.ndarray  # (len(EXPERT_FEATURES),)
    layout: Layout
    embedder_id: str = ""
    use_evidence: bool = True
    temperature: float = 1.0
    alone: float = 0.97  # from this calibrated confidence, the router decides alone
    scale: dict[str, float] = field(default_factory=dict)  # similarity spreads (training)
    threshold: float = 0.0  # the embedder's dense threshold at training time
    info: dict = field(default_factory=dict)  # how it was trained (data sizes, seed, dev)

    @property
    def base(self) -> tuple[str, ...]:
        """The classes that are not experts (assistant, escalate/<reason>...)."""
        return tuple(c for c in self.classes if c == ASSISTANT or c.startswith(ESCALATE))

    @property
    def experts(self) -> tuple[str, ...]:
        return self.classes[len(self.base) :]

    def logits(self, x: np.ndarray, g: np.ndarray, experts: list[str]) -> np.ndarray:
        """Raw scores for `base` + `experts` (x: features, g: per-expert rows)."""
        known = [self.classes.index(e) for e in self.experts]
        rows = list(range(len(self.base)))
        w_mean = self.weights[known].mean(0) if known else np.zeros_like(self.weights[0])
        b_mean = float(self.bias[known].mean()) if known else 0.0
        out = np.empty(len(rows) + len(experts), dtype=np.float64)
        out[: len(rows)] = self.weights[rows] @ x + self.bias[rows]
        for i, expert in enumerate(experts):
            if expert in self.classes:
                j = self.classes.index(expert)
                own = float(self.weights[j] @ x + self.bias[j])
            else:
                own = float(w_mean @ x + b_mean)
            out[len(rows) + i] = own + float(g[i] @ self.expert_weights)
        return out

    def probabilities(
        self, x: np.ndarray, g: np.ndarray, experts: list[str]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Calibrated probabilities: per agent (assistant, escalate, `experts`), and of each
        hand-off reason."""
        z = self.logits(x, g, experts) / self.temperature
        p = softmax(z[None, :])[0]
        names = [*self.base, *experts]
        agents: dict[str, float] = {}
        reasons: dict[str, float] = {}
        for name, value in zip(names, (float(v) for v in p), strict=True):
            agent, _, reason = name.partition("/")
            agents[agent] = agents.get(agent, 0.0) + value
            if reason:
                reasons[reason] = value
        return agents, reasons

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            expert_weights=self.expert_weights.astype(np.float32),
            meta=np.array(
                json.dumps(
                    {
                        "classes": list(self.classes),
                        "dim": self.layout.dim,
                        "use_context": self.layout.use_context,
                        "embedder_id": self.embedder_id,
                        "use_evidence": self.use_evidence,
                        "temperature": self.temperature,
                        "alone": self.alone,
                        "scale": self.scale,
                        "threshold": self.threshold,
                        "info": self.info,
                    },
                    ensure_ascii=False,
                )
            ),
        )

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> Model:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                classes=tuple(meta["classes"]),
                weights=data["weights"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                expert_weights=data["expert_weights"].astype(np.float32),
                layout=Layout(meta["dim"], meta["use_context"]),
                embedder_id=meta["embedder_id"],
                use_evidence=meta["use_evidence"],
                temperature=meta["temperature"],
                alone=meta["alone"],
                scale=meta["scale"],
                threshold=meta["threshold"],
                info=meta["info"],
            )


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit(
    x: np.ndarray,
    g: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float = 1e-3,
    steps: int = 600,
    lr: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train by full-batch Adam on the mean cross-entropy plus an L2 penalty.

    x: (n, features); g: (n, experts, expert features), the experts being the last classes;
    y: (n,) class indices. Returns weights, bias, expert weights. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    x = x.astype(np.float32)
    n, d = x.shape
    n_base = n_classes - g.shape[1]
    w = rng.normal(0.0, 1e-3, (n_classes, d)).astype(np.float32)
    b = np.zeros(n_classes)
    v = np.zeros(g.shape[2])
    onehot = np.eye(n_classes)[y]
    # Classes weighted so that the small ones (small talk, a human) count as much as the others.
    counts = onehot.sum(0)
    sample_w = (n / (n_classes * np.maximum(counts, 1)))[y]
    sample_w = sample_w / sample_w.mean()
    params = [w, b, v]
    m = [np.zeros_like(p) for p in params]
    s = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        z = x @ w.T + b
        z[:, n_base:] += g @ v
        err = ((softmax(z) - onehot) * sample_w[:, None] / n).astype(np.float32)
        grads = [
            err.T @ x + l2 * w,
            err.sum(0),
            np.einsum("nk,nkf->f", err[:, n_base:], g) + l2 * v,
        ]
        for i, (p, grad) in enumerate(zip(params, grads, strict=True)):
            m[i] = beta1 * m[i] + (1 - beta1) * grad
            s[i] = beta2 * s[i] + (1 - beta2) * grad * grad
            mhat = m[i] / (1 - beta1**step)
            shat = s[i] / (1 - beta2**step)
            p -= lr * mhat / (np.sqrt(shat) + eps)
    return w, b, v


def fit_temperature(logits: np.ndarray, y: np.ndarray, merge: np.ndarray | None = None) -> float:
    """The temperature that minimises the negative log-likelihood (grid, then refined).

    `merge` (classes x agents, 0/1): the likelihood is read on the agents' probabilities
    (the confidence the router reports); `y` then holds agent indices.
    """

    def nll(t: float) -> float:
        p = softmax(logits / t)
        if merge is not None:
            p = p @ merge
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(8.0), 81))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.9, best * 1.1, 41)
    return float(min(fine, key=nll))


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> tuple[float, list[dict]]:
    """ECE over equal-width confidence bins, and the bins (for the reliability diagram)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows, ece, n = [], 0.0, len(confidence)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence <= hi)
        k = int(inside.sum())
        if not k:
            continue
        acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += k / n * abs(acc - conf)
        rows.append({"lo": lo, "hi": hi, "n": k, "accuracy": acc, "confidence": conf})
    return float(ece), rows


def wilson_lower(hits: int, n: int, z: float) -> float:
    """One-sided lower confidence bound of a proportion (Wilson score interval)."""
    if n == 0:
        return 0.0
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


# z of a one-sided 95% bound: the band's true precision is at least the target with 95%
# confidence, not just its precision on the few hundred dev messages it was picked on.
ALONE_Z = 1.6449


def pick_alone(
    confidence: np.ndarray,
    correct: np.ndarray,
    precision: float = 0.97,
    *,
    z: float = ALONE_Z,
    already: tuple[int, int] = (0, 0),
) -> float:
    """The lowest confidence whose band reaches `precision` by its Wilson lower bound.

    The band is every decision at or above the confidence, plus `already` (hits, n): the
    decisions taken alone whatever the confidence (the safety rules'), so the bound is on the
    precision of everything the router decides alone. The lowest threshold where the band's
    plain precision touches the target is the edge of a noisy estimate; the lower bound leaves
    the margin that a few hundred messages call for. z=0 gives the plain precision.
    """
    order = np.argsort(-confidence)
    hits, n = already
    best = 1.01
    for j in order:
        hits += int(correct[j])
        n += 1
        if wilson_lower(hits, n, z) >= precision:
            best = float(confidence[j])
    return best


__all__ = [
    "BASE_CLASSES",
    "ESCALATION_KINDS",
    "EXPERT_FEATURES",
    "LEXICAL_PATH",
    "MODEL_PATH",
    "Model",
    "expected_calibration_error",
    "fit",
    "fit_temperature",
    "pick_alone",
    "wilson_lower",
    "escalation_class",
    "softmax",
]
