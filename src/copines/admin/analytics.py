"""Analytics over stored turns: volumes, routing, escalations, sentiment, upsell, cost, latency."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from copines.admin.turns import UNKNOWN, Turn
from copines.experts import ESCALATE


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the smallest value with q% of values at or below."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Latency:
    step: str
    count: int
    p50: float
    p95: float


@dataclass
class Analytics:
    """Figures over the turns of a period."""

    days: list[date]
    turns: int = 0
    conversations: int = 0
    per_day: dict[date, Counter] = field(default_factory=dict)  # expert (or escalate) -> turns
    per_expert: Counter = field(default_factory=Counter)
    routing: Counter = field(default_factory=Counter)
    escalations: int = 0
    sentiment: Counter = field(default_factory=Counter)
    upsell_turns: int = 0
    upsell_triggers: Counter = field(default_factory=Counter)
    loops: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    cost_total: float = 0.0
    cost_per_day: dict[date, float] = field(default_factory=dict)
    latency: list[Latency] = field(default_factory=list)

    @property
    def escalation_rate(self) -> float:
        return self.escalations / self.turns if self.turns else 0.0

    @property
    def feedback_count(self) -> int:
        return self.thumbs_up + self.thumbs_down

    @property
    def feedback_ratio(self) -> float:
        """Share of thumbs up among the answers that got a thumb."""
        return self.thumbs_up / self.feedback_count if self.feedback_count else 0.0

    @property
    def cost_per_conversation(self) -> float:
        return self.cost_total / self.conversations if self.conversations else 0.0

    @property
    def upsell_rate(self) -> float:
        return self.upsell_turns / self.turns if self.turns else 0.0


# Steps shown first, in the order a turn runs them (copines.turn); others follow by name.
STEP_ORDER = [
    "load",
    "route_local",
    "orchestrator",
    "route",
    "retrieval",
    "generation",
    "postprocess",
    "save",
    "overhead",
    "total",
]
STEP_LABELS = {
    "load": "chargement",
    "route_local": "routage local",
    "orchestrator": "orchestrateur",
    "route": "routage",
    "retrieval": "recherche",
    "generation": "génération",
    "postprocess": "post-traitement",
    "save": "enregistrement",
    "overhead": "hors modèles",
    "total": "total",
}


def step_label(step: str) -> str:
    """A step's French name ("retrieval_audrey" -> "recherche audrey")."""
    if step in STEP_LABELS:
        return STEP_LABELS[step]
    head, _, tail = step.partition("_")
    return f"{STEP_LABELS.get(head, head)} {tail}".strip()


# Recorded with the timings but not a duration the visitor waits for.
NOT_LATENCY = {"speculative_saved"}


def compute(turns: list[Turn], start: date, end: date) -> Analytics:
    """Figures for the turns whose day falls in [start, end]."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    result = Analytics(
        days=days, per_day={d: Counter() for d in days}, cost_per_day={d: 0.0 for d in days}
    )
    timings: dict[str, list[float]] = {}
    conversations = set()
    for turn in turns:
        if not start <= turn.day <= end:
            continue
        message = turn.message
        result.turns += 1
        conversations.add(turn.conversation_id)
        who = ESCALATE if turn.escalated else (turn.expert or UNKNOWN)
        result.per_day[turn.day][who] += 1
        result.per_expert[who] += 1
        result.routing[turn.router] += 1
        result.escalations += turn.escalated
        result.sentiment[turn.sentiment or UNKNOWN] += 1
        if turn.upsell:
            result.upsell_turns += 1
            result.upsell_triggers.update(turn.upsell)
        result.loops += turn.loop
        result.thumbs_up += turn.feedback == 1
        result.thumbs_down += turn.feedback == -1
        cost = message.cost_usd or 0.0
        result.cost_total += cost
        result.cost_per_day[turn.day] += cost
        for step, ms in (message.timings_ms or {}).items():
            if isinstance(ms, int | float) and step not in NOT_LATENCY:
                timings.setdefault(step, []).append(float(ms))
    result.conversations = len(conversations)
    steps = [s for s in STEP_ORDER if s in timings] + sorted(set(timings) - set(STEP_ORDER))
    result.latency = [
        Latency(s, len(timings[s]), percentile(timings[s], 50), percentile(timings[s], 95))
        for s in steps
    ]
    return result
