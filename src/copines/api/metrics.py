"""Prometheus metrics of one app instance (its own registry: two apps in a process do not clash).

With `--workers N` each worker keeps its own counters; scrape each worker or run one per instance.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30)


class Metrics:
    """Counters and histograms the chat routes feed from each turn's result."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter(
            "copines_turns",
            "Turns answered, by expert and router.",
            ["expert", "router"],
            registry=r,
        )
        self.escalations = Counter("copines_escalations", "Turns handed to the team.", registry=r)
        self.turn_errors = Counter(
            "copines_turn_errors", "Turns whose generation failed.", ["kind"], registry=r
        )
        self.http_errors = Counter(
            "copines_http_errors", "Requests refused or failed, by status.", ["status"], registry=r
        )
        self.rate_limited = Counter(
            "copines_rate_limited",
            "Requests refused by a rate limit, by rule.",
            ["rule"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "copines_turn_step_seconds",
            "Wall time of each step of a turn.",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "copines_stream_first_token_seconds",
            "Time from request to the first streamed token.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.open_seconds = Histogram(
            "copines_api_open_seconds",
            "Before the turn: validation, rate limits, finding or starting the conversation.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "copines_llm_tokens",
            "Model tokens, by kind (prompt, completion).",
            ["kind"],
            registry=r,
        )
        self.cost = Counter("copines_llm_cost_usd", "Model cost in dollars.", registry=r)
        self.in_flight = Gauge("copines_turns_in_flight", "Turns running now.", registry=r)

    def record_turn(self, public: dict[str, Any], usage: dict[str, Any] | None = None) -> None:
        """Feed the metrics from a turn's public object (and the stored answer's usage)."""
        self.turns.labels(
            expert=public.get("agent", "?"), router=public.get("router") or "none"
        ).inc()
        if public.get("escalated"):
            self.escalations.inc()
        if public.get("error"):
            self.turn_errors.labels(kind="generation").inc()
        for step, ms in (public.get("timings_ms") or {}).items():
            if isinstance(ms, int | float):
                self.step_seconds.labels(step=step).observe(ms / 1000)
        if usage:
            self.record_usage(usage)

    def record_usage(self, usage: dict[str, Any]) -> None:
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens")
            if value:
                self.tokens.labels(kind=kind).inc(value)
        if usage.get("cost_usd"):
            self.cost.inc(usage["cost_usd"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
