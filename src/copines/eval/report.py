"""`copines eval`: routing and post-processing scored on one part of the labelled sets."""

from __future__ import annotations

from typing import Any

import numpy as np

from copines.deps import Deps
from copines.eval import history_of, origin, part_files, read_part
from copines.postprocess import analyze
from copines.routing import build_router
from copines.routing.classifier import Model, expected_calibration_error
from copines.routing.local import last_agent

TARGETS = {
    "routing_accuracy": 0.88,
    "hard_accuracy": 0.75,
    "local_precision": 0.97,
    "sentiment_f1": 0.75,
    "upsell_f1": 0.75,
    "loop_f1": 0.75,
}


def f1_table(pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per class from (expected, predicted) pairs."""
    classes = sorted({e for e, _ in pairs} | {p for _, p in pairs})
    table = {}
    for c in classes:
        tp = sum(1 for e, p in pairs if e == c and p == c)
        fp = sum(1 for e, p in pairs if e != c and p == c)
        fn = sum(1 for e, p in pairs if e == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[c] = {
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(f1, 3),
            "support": tp + fn,
        }
    return table


def accuracy(pairs: list[tuple[Any, Any]]) -> float:
    return round(sum(1 for e, p in pairs if e == p) / len(pairs), 4) if pairs else 0.0


async def score_routing(
    deps: Deps, rows: list[dict], *, local_only: bool = True, model: Model | None = None
) -> dict:
    """Route every row with the cascade, and read the local router's own decisions."""
    router = build_router(deps, deps.chat, local_only=local_only, model=model)
    offline = build_router(deps, None, local_only=True, model=model)
    pairs, by_difficulty, by_kind, errors = [], {}, {}, []
    confidences, correct, alone, escalations = [], [], [], 0
    rules_hit, local_alone = [], []  # safety-rule decisions; every decision taken alone
    for row in rows:
        history = history_of(row.get("history"))
        previous = last_agent(history, None)
        vector = await deps.embedder.embed_one(row["message"])
        local = await offline.local.decide(row["message"], vector, history, previous)
        right = local.agent == row["expected"]
        if local.rule == "safety":
            rules_hit.append(right)
            local_alone.append(right)
        else:
            confidences.append(local.confidence)
            correct.append(right)
            alone.append(local.confidence >= offline.alone)
            if alone[-1]:
                local_alone.append(right)
        decision, _, _ = await router.route(row["message"], vector, history, previous)
        pairs.append((row["expected"], decision.agent))
        escalations += decision.reason == "low_confidence"
        by_difficulty.setdefault(row.get("difficulty", "?"), []).append(pairs[-1])
        by_kind.setdefault(row.get("kind", "?"), []).append(pairs[-1])
        if decision.agent != row["expected"]:
            errors.append(
                {
                    "id": row.get("id"),
                    "expected": row["expected"],
                    "got": decision.agent,
                    "reason": decision.reason,
                    "confidence": round(decision.confidence, 3),
                }
            )
    conf, hit, band = np.array(confidences), np.array(correct, bool), np.array(alone, bool)
    ece, bins = expected_calibration_error(conf, hit) if len(conf) else (0.0, [])
    n = len(rows)
    return {
        "n": n,
        "router": "local" if router.chat is None else "cascade",
        "accuracy": accuracy(pairs),
        "by_difficulty": {k: accuracy(v) for k, v in sorted(by_difficulty.items())},
        "by_kind": {k: accuracy(v) for k, v in sorted(by_kind.items())},
        "f1": f1_table(pairs),
        "low_confidence_share": round(escalations / n, 4) if n else 0.0,
        "calibration": {"n": len(conf), "ece": round(ece, 4), "bins": bins},
        "decide_alone": {
            "threshold": round(offline.alone, 4),
            "coverage": round(len(local_alone) / n, 4) if n else 0.0,
            "precision": round(float(np.mean(local_alone)), 4) if local_alone else 0.0,
            "decisions": len(local_alone),
            "classifier_coverage": round(float(band.mean()), 4) if len(band) else 0.0,
            "classifier_precision": round(float(hit[band].mean()), 4) if band.any() else 0.0,
            "safety_rules": len(rules_hit),
            "safety_rules_precision": round(float(np.mean(rules_hit)), 4) if rules_hit else 0.0,
        },
        "errors": errors,
    }


async def score_postprocess(deps: Deps, rows: list[dict]) -> dict:
    """Sentiment, upsell and loop, from the post-processing functions the turn uses."""
    sentiment, upsell, loop = [], [], []
    for row in rows:
        history = history_of(row.get("history"))
        vector = await deps.embedder.embed_one(row["message"])
        earlier = [m.content for m in history if m.role == "user"][-4:]
        previous = await deps.embedder.embed_many(earlier)
        got = analyze(row["message"], vector, previous, earlier=earlier).public()
        sentiment.append((row["sentiment"], got["sentiment"]))
        upsell.append((str(row["upsell"]), str(got["upsell"])))
        loop.append((str(row["loop"]), str(got["loop"])))
    table = f1_table(sentiment)
    macro = np.mean([v["f1"] for v in table.values()]) if table else 0.0
    return {
        "n": len(rows),
        "sentiment_accuracy": accuracy(sentiment),
        "sentiment_f1": round(float(macro), 3),  # macro over the three labels
        "sentiment_table": table,
        "upsell_f1": f1_table(upsell).get("True", {}).get("f1", 0.0),
        "loop_f1": f1_table(loop).get("True", {}).get("f1", 0.0),
    }


async def evaluate(
    deps: Deps, part: str = "test", *, local_only: bool = False, model: Model | None = None
) -> dict:
    """The report of one part: sizes, origin, routing and post-processing figures, targets."""
    routing_rows = read_part(part, "routing")
    post_rows = read_part(part, "postprocess")
    report: dict[str, Any] = {
        "part": part,
        "origin": origin(part),
        "files": [p.name for p in part_files(part, "routing") + part_files(part, "postprocess")],
    }
    report["routing"] = await score_routing(deps, routing_rows, local_only=True, model=model)
    if not local_only and deps.chat is not None:
        report["routing_cascade"] = await score_routing(
            deps, routing_rows, local_only=False, model=model
        )
    report["postprocess"] = await score_postprocess(deps, post_rows) if post_rows else None
    r, p = report["routing"], report["postprocess"] or {}
    checks = {
        "routing_accuracy": r["accuracy"],
        "hard_accuracy": r["by_difficulty"].get("hard"),
        "local_precision": r["decide_alone"]["precision"],
        "sentiment_f1": p.get("sentiment_f1"),
        "upsell_f1": p.get("upsell_f1"),
        "loop_f1": p.get("loop_f1"),
    }
    report["targets"] = {
        name: {"value": value, "target": TARGETS[name], "met": value >= TARGETS[name]}
        for name, value in checks.items()
        if value is not None
    }
    report["passed"] = all(t["met"] for t in report["targets"].values())
    return report


def print_report(report: dict, out) -> None:
    """The report as text (rich console)."""
    r = report["routing"]
    out.print(f"[bold]part {report['part']}[/] ({', '.join(report['files'])})")
    if report["origin"]:
        out.print(f"  origin: {report['origin']}")
    out.print(f"[bold]routing[/] ({r['n']} messages, offline cascade)")
    by = ", ".join(f"{k} {v:.3f}" for k, v in r["by_difficulty"].items())
    out.print(f"  accuracy {r['accuracy']:.3f} ({by})")
    for cls, row in r["f1"].items():
        out.print(
            f"  {cls:<9} F1 {row['f1']:.3f}  P {row['precision']:.3f}  "
            f"R {row['recall']:.3f}  (n={row['support']})"
        )
    a = r["decide_alone"]
    out.print(
        f"  with a model, decides alone (safety rules, or confidence >= {a['threshold']:.3f}): "
        f"coverage {a['coverage']:.1%}, precision {a['precision']:.3f} "
        f"({a['decisions']} decisions; safety rules {a['safety_rules']} at "
        f"{a['safety_rules_precision']:.3f}, classifier {a['classifier_coverage']:.1%} of the "
        f"rest at {a['classifier_precision']:.3f})"
    )
    out.print(
        f"  calibration: ECE {r['calibration']['ece']:.3f} over {r['calibration']['n']} "
        f"classifier decisions; under 0.7 to a human: {r['low_confidence_share']:.1%}"
    )
    if "routing_cascade" in report:
        c = report["routing_cascade"]
        out.print(f"[bold]routing with the orchestrator[/]: accuracy {c['accuracy']:.3f}")
    p = report["postprocess"]
    if p:
        out.print(f"[bold]post-processing[/] ({p['n']} messages)")
        out.print(
            f"  sentiment F1 {p['sentiment_f1']:.3f} (accuracy {p['sentiment_accuracy']:.3f}) · "
            f"upsell F1 {p['upsell_f1']:.3f} · loop F1 {p['loop_f1']:.3f}"
        )
    for name, t in report["targets"].items():
        mark = "[green]ok[/]" if t["met"] else "[red]under target[/]"
        out.print(f"  {name}: {t['value']:.3f} (target {t['target']:.2f}) {mark}")


__all__ = ["TARGETS", "evaluate", "f1_table", "print_report"]
