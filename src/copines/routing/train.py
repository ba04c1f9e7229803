"""Training the router from the package's training part (`copines train-router`).

The knowledge-base evidence of the training messages is computed against a knowledge folder
(the sample knowledge, `examples/knowledge`), ingested into a temporary store with the
configured embedder. Every setting is chosen on the dev part; the test part is never read.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copines.config import Settings
from copines.deps import Deps
from copines.eval import history_of, read_part
from copines.experts import ESCALATE
from copines.routing import rules
from copines.routing.classifier import (
    BASE_CLASSES,
    Model,
    escalation_class,
    expected_calibration_error,
    fit,
    fit_temperature,
    pick_alone,
    softmax,
)
from copines.routing.decision import ASSISTANT, CONFIDENCE_FLOOR
from copines.routing.features import Inputs, Layout, shared_features
from copines.routing.local import LocalRouter, last_agent

EVIDENCE_FLOORS = (0.0, 1.0, 1.35)  # tried on dev, in multiples of the embedder's threshold
SIMILARITIES = ("exemplars", "profile", "evidence_top", "evidence_mean")


async def read_inputs(local: LocalRouter, rows: list[dict]) -> list[Inputs]:
    """The classifier's inputs for labelled rows (evidence from `local`'s store)."""
    vectors = await local.embedder.embed([r["message"] for r in rows])
    out = []
    for row, vector in zip(rows, vectors, strict=True):
        history = history_of(row.get("history"))
        out.append(await local.inputs(row["message"], vector, history, last_agent(history, None)))
    return out


def similarity_scales(inputs: list[Inputs], experts: list[str]) -> dict[str, float]:
    """The spread of each per-expert similarity around the experts' mean (training part)."""
    scales = {}
    for name in SIMILARITIES:
        values = []
        for item in inputs:
            if name == "exemplars":
                column = [item.exemplars.get(e, 0.0) for e in experts]
            elif name == "profile":
                column = [item.profile.get(e, 0.0) for e in experts]
            else:
                j = 0 if name == "evidence_top" else 1
                column = [item.evidence.get(e, (0.0, 0.0))[j] for e in experts]
            values.extend(np.asarray(column) - np.mean(column))
        scales[name] = float(np.std(values)) or 1.0
    return scales


def labels_of(rows: list[dict]) -> list[str]:
    """The class of each row: its agent, a hand-off split by its reason."""
    return [
        escalation_class(r.get("kind")) if r["expected"] == ESCALATE else r["expected"]
        for r in rows
    ]


@dataclass
class Matrices:
    x: np.ndarray
    g: np.ndarray
    y: np.ndarray


def matrices(
    inputs: list[Inputs],
    labels: list[str],
    classes: tuple[str, ...],
    layout: Layout,
    scale: dict[str, float],
    use_evidence: bool,
) -> Matrices:
    from copines.routing.features import expert_features

    experts = [c for c in classes if c != ASSISTANT and not c.startswith(ESCALATE)]
    floor = scale.get("floor", 0.0) if use_evidence else None
    x = np.stack([shared_features(i, layout, floor) for i in inputs]).astype(np.float32)
    g = np.stack([expert_features(i, experts, scale, use_evidence) for i in inputs]).astype(
        np.float64
    )
    y = np.array([classes.index(label) for label in labels])
    return Matrices(x, g, y)


def logits_of(model: Model, m: Matrices) -> np.ndarray:
    n_base = len(model.base)
    z = m.x @ model.weights.T.astype(np.float64) + model.bias
    z[:, n_base:] += m.g @ model.expert_weights.astype(np.float64)
    return z


def merge_of(model: Model) -> tuple[np.ndarray, list[str]]:
    """The 0/1 matrix (classes x agents) that sums the hand-off reasons into escalate."""
    agents: list[str] = []
    for name in model.classes:
        agent = name.split("/")[0]
        if agent not in agents:
            agents.append(agent)
    merge = np.zeros((len(model.classes), len(agents)))
    for j, name in enumerate(model.classes):
        merge[j, agents.index(name.split("/")[0])] = 1.0
    return merge, agents


def agent_probabilities(model: Model, p: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class probabilities summed per agent."""
    merge, agents = merge_of(model)
    return agents, p @ merge


def offline_outcome(
    model: Model, m: Matrices, rows: list[dict], temperature: float
) -> dict[str, np.ndarray]:
    """What the cascade does offline: safety rules, then the classifier, under 0.7 a human."""
    agents, p = agent_probabilities(model, softmax(logits_of(model, m) / temperature))
    predicted = np.array([agents[i] for i in p.argmax(1)], dtype=object)
    confidence = p.max(1)
    final = predicted.copy()
    safety = np.array([rules.check(r["message"]) is not None for r in rows])
    final[confidence < CONFIDENCE_FLOOR] = ESCALATE
    final[safety] = ESCALATE
    expected = np.array([r["expected"] for r in rows], dtype=object)
    return {
        "predicted": predicted,
        "confidence": confidence,
        "final": final,
        "safety": safety,
        "expected": expected,
    }


def _train(
    x: Matrices, classes, layout, scale, use_evidence, l2, seed, embedder_id, threshold
) -> Model:
    w, b, v = fit(x.x, x.g, x.y, len(classes), l2=l2, seed=seed)
    return Model(
        classes=classes,
        weights=w.astype(np.float32),
        bias=b.astype(np.float32),
        expert_weights=v.astype(np.float32),
        layout=layout,
        embedder_id=embedder_id,
        use_evidence=use_evidence,
        scale=scale,
        threshold=threshold,
    )


async def train(
    settings: Settings,
    knowledge: Path,
    *,
    seed: int = 0,
    out_dir: Path | None = None,
    log=print,
) -> dict:
    """Train on the training part, choose on dev, write model.npz and model-lexical.npz."""
    out_dir = out_dir or Path(__file__).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    train_rows = read_part("train", "routing")
    dev_rows = read_part("dev", "routing")
    with tempfile.TemporaryDirectory() as tmp:
        temp = settings.model_copy(
            update={"database_url": f"sqlite:///{tmp}/train.db", "data_dir": Path(tmp)}
        )
        deps = await Deps.create(temp)
        try:
            await deps.ingester().ingest_paths([knowledge], owner="auto")
            log(f"knowledge: {knowledge} ingested in a temporary store")
            local = LocalRouter(deps.experts, deps.embedder, deps.store, use_evidence=True)
            train_inputs = await read_inputs(local, train_rows)
            dev_inputs = await read_inputs(local, dev_rows)
            embedder_id = deps.embedder.id
            threshold = float(deps.embedder.default_threshold)
            dim = deps.embedder.dim
        finally:
            await deps.aclose()
    experts = sorted({r["expected"] for r in train_rows} - set(BASE_CLASSES))
    y_train = labels_of(train_rows)
    y_dev = labels_of(dev_rows)
    base = sorted(set(y_train) - set(experts))
    classes = (*base, *experts)
    scale = similarity_scales(train_inputs, experts)

    def evaluate(
        layout: Layout, use_evidence: bool, l2: float, floor: float
    ) -> tuple[Model, float, float]:
        sc = scale | {"floor": floor}
        mt = matrices(train_inputs, y_train, classes, layout, sc, use_evidence)
        md = matrices(dev_inputs, y_dev, classes, layout, sc, use_evidence)
        model = _train(mt, classes, layout, sc, use_evidence, l2, seed, embedder_id, threshold)
        merge, agents = merge_of(model)
        y_agents = np.array([agents.index(r["expected"]) for r in dev_rows])
        model.temperature = fit_temperature(logits_of(model, md), y_agents, merge=merge)
        outcome = offline_outcome(model, md, dev_rows, model.temperature)
        accuracy = float((outcome["final"] == outcome["expected"]).mean())
        return model, accuracy, float((outcome["predicted"] == outcome["expected"]).mean())

    # Evidence: none, or each base's best matches above a floor, in multiples of the
    # embedder's match threshold (0: every match counts).
    variants = [(False, 0.0)] + [(True, f) for f in EVIDENCE_FLOORS]
    grid = []
    for use_evidence, floor_factor in variants:
        for l2 in (1e-5, 3e-5, 1e-4):
            layout = Layout(dim, True)
            _, acc, raw = evaluate(layout, use_evidence, l2, floor_factor * threshold)
            grid.append(
                {
                    "evidence": use_evidence,
                    "floor": floor_factor,
                    "l2": l2,
                    "dev_accuracy": round(acc, 4),
                    "dev_classifier_accuracy": round(raw, 4),
                }
            )
            log(json.dumps(grid[-1]))
    # On a tie, the evidence: it is what lets a new document draw its questions; then the
    # highest floor: under it a match is noise, and a router without a store (or with an
    # empty base) reads no evidence at all, which a floor makes an ordinary input.
    best = max(
        grid,
        key=lambda r: (r["dev_accuracy"], r["evidence"], r["floor"], r["dev_classifier_accuracy"]),
    )
    best_without = max(
        (r for r in grid if not r["evidence"]),
        key=lambda r: (r["dev_accuracy"], r["dev_classifier_accuracy"]),
    )
    summary = {"grid": grid, "chosen": best, "without_evidence": best_without}
    outputs = [("model.npz", dim, best), ("model-lexical.npz", 0, best)]
    outputs.append(("model-no-evidence.npz", dim, best_without))
    for name, layout_dim, chosen in outputs:
        layout = Layout(layout_dim, layout_dim > 0)
        floor = chosen["floor"] * threshold
        model, acc, raw = evaluate(layout, chosen["evidence"], chosen["l2"], floor)
        md = matrices(dev_inputs, y_dev, classes, layout, model.scale, chosen["evidence"])
        outcome = offline_outcome(model, md, dev_rows, model.temperature)
        correct = outcome["predicted"] == outcome["expected"]
        kept = ~outcome["safety"]
        # The safety rules' own decisions (right when the message was for a human) count in
        # the precision of what the router decides alone.
        rules_right = outcome["final"][~kept] == outcome["expected"][~kept]
        model.alone = pick_alone(
            outcome["confidence"][kept],
            correct[kept],
            already=(int(rules_right.sum()), int((~kept).sum())),
        )
        ece, _ = expected_calibration_error(outcome["confidence"][kept], correct[kept])
        model.info = {
            "seed": seed,
            "train": len(train_rows),
            "dev": len(dev_rows),
            "knowledge": str(knowledge),
            "l2": chosen["l2"],
            "evidence_floor": chosen["floor"],
            "dev_accuracy": round(acc, 4),
            "dev_classifier_accuracy": round(raw, 4),
            "dev_ece": round(ece, 4),
        }
        model.save(out_dir / name)
        summary[name] = model.info | {"temperature": model.temperature, "alone": model.alone}
        log(f"{name}: {json.dumps(summary[name])}")
    return summary
