"""The learnt router's numerics: training, temperature, the decide-alone threshold, ECE, and the
shipped weights."""

from __future__ import annotations

import numpy as np

from copines.routing.classifier import (
    MODEL_PATH,
    Model,
    expected_calibration_error,
    fit,
    fit_temperature,
    pick_alone,
    softmax,
    wilson_lower,
)
from copines.routing.features import Inputs, Layout, expert_features, hashed


def toy(seed: int = 1, n: int = 300):
    """Three classes (two base, one expert) separable along the first features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 6)).astype(np.float32)
    x[np.arange(n), y] += 3.0
    g = np.zeros((n, 1, 2), dtype=np.float32)
    g[:, 0, 0] = (y == 2) * 1.0 + rng.normal(0, 0.3, n)  # per-expert evidence for class 2
    return x, g, y


def test_training_is_reproducible_and_learns():
    x, g, y = toy()
    first = fit(x, g, y, 3, steps=300, seed=7)
    again = fit(x, g, y, 3, steps=300, seed=7)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    w, b, v = first
    z = x @ w.T + b
    z[:, 2:] += g @ v
    assert (z.argmax(1) == y).mean() > 0.95
    assert v[0] > 0.5  # the shared per-expert weight learnt the evidence


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (4000, 4))
    true = 2.5  # labels drawn from softmax(logits / 2.5): the model is overconfident
    p = softmax(logits / true)
    y = np.array([rng.choice(4, p=row) for row in p])
    assert abs(fit_temperature(logits, y) - true) < 0.25


def test_decide_alone_threshold_holds_the_precision_in_its_band():
    confidence = np.array([0.99, 0.97, 0.95, 0.93, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6])
    correct = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0], dtype=bool)
    threshold = pick_alone(confidence, correct, precision=0.97, z=0)
    assert threshold == 0.8  # 7/7 from 0.8 up; 7/8 from 0.75
    band = confidence >= threshold
    assert correct[band].mean() >= 0.97
    assert pick_alone(np.array([0.9]), np.array([False])) > 1  # nothing reaches it: never alone


def test_wilson_lower_bound_matches_known_values():
    assert wilson_lower(0, 0, 1.6449) == 0.0
    assert wilson_lower(10, 10, 0) == 1.0
    # 95/100 at 95% one-sided: 0.9008 (Wilson score interval, worked by hand)
    assert abs(wilson_lower(95, 100, 1.6449) - 0.9008) < 1e-3
    # all right: n / (n + z^2)
    assert abs(wilson_lower(150, 150, 1.6449) - 150 / (150 + 1.6449**2)) < 1e-9


def test_decide_alone_threshold_keeps_a_margin_over_the_plain_edge():
    # 300 decisions, one wrong at each of the 30 lowest confidences' every third place.
    confidence = np.linspace(0.99, 0.60, 300)
    correct = np.ones(300, dtype=bool)
    correct[200::3] = False  # errors below confidence ~0.73
    correct[150] = False  # one error in the middle
    plain = pick_alone(confidence, correct, precision=0.97, z=0)
    bounded = pick_alone(confidence, correct, precision=0.97)
    assert bounded > plain  # the bound asks for a margin: a higher threshold
    band = confidence >= bounded
    assert wilson_lower(int(correct[band].sum()), int(band.sum()), 1.6449) >= 0.97
    # A band one step lower fails the bound (it is the lowest that holds).
    lower = confidence >= confidence[confidence < bounded].max()
    assert wilson_lower(int(correct[lower].sum()), int(lower.sum()), 1.6449) < 0.97


def test_decide_alone_counts_the_safety_rules_decisions():
    confidence = np.linspace(0.99, 0.80, 200)
    correct = np.ones(200, dtype=bool)
    alone = pick_alone(confidence, correct, precision=0.97)
    assert alone < 0.99
    # Three wrong safety-rule decisions out of 20 are part of what is decided alone: the band
    # must make up for them with more right decisions, so the threshold goes down (more band)
    # or, when it cannot, the router never decides alone.
    worse = pick_alone(confidence, correct, precision=0.97, already=(17, 20))
    assert worse > 1 or worse < alone
    assert pick_alone(confidence[:5], correct[:5], precision=0.97, already=(0, 20)) > 1


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    confidence = np.full(100, 0.8)
    correct = np.arange(100) < 80
    ece, bins = expected_calibration_error(confidence, correct)
    assert ece < 1e-9 and bins[0]["n"] == 100
    ece, _ = expected_calibration_error(np.full(100, 0.99), correct)
    assert abs(ece - 0.19) < 1e-6


def test_evidence_counts_only_above_its_floor_and_relative_to_the_other_expert():
    inputs = Inputs("q", np.zeros(4), evidence={"audrey": (0.5, 0.45), "carole": (0.25, 0.2)})
    scale = {"evidence_top": 0.1, "evidence_mean": 0.1, "floor": 0.3}
    g = expert_features(inputs, ["audrey", "carole"], scale)
    top = 3  # EXPERT_FEATURES: previous, exemplars, profile, evidence_top, evidence_mean
    assert g[0, top] == -g[1, top] and abs(g[0, top] - 1.0) < 1e-6  # (0.2 - 0) / 2 / 0.1
    under = Inputs("q", np.zeros(4), evidence={"audrey": (0.29, 0.2), "carole": (0.1, 0.1)})
    assert not expert_features(under, ["audrey", "carole"], scale)[:, top:].any()


def test_hashed_features_are_stable_and_normalised():
    a, b = (
        hashed("Mon tunnel Systeme.io ne marche pas"),
        hashed("mon TUNNEL systeme.io ne marche pas"),
    )
    assert a == b  # case and accents folded, the same buckets in every process
    assert abs(sum(v * v for v in a.values()) - 1.0) < 1e-6


def test_the_shipped_weights_load_from_the_package_and_round_trip(tmp_path):
    model = Model.load(MODEL_PATH)
    assert {"assistant", "audrey", "carole"} <= set(model.classes)
    assert any(c.startswith("escalate/") for c in model.classes)
    assert 0.7 <= model.alone <= 1.0 and 0.2 < model.temperature < 5
    assert model.layout == Layout(512, True) and model.info["train"] >= 1000
    model.save(tmp_path / "m.npz")
    again = Model.load(tmp_path / "m.npz")
    assert np.allclose(again.weights, model.weights) and again.classes == model.classes
