"""Routing: who answers a visitor's message (an expert, the assistant, or a human).

- `rules`: the safety rules (always a human);
- `classifier` and `features`: the learnt router and what it reads;
- `local`: the rules and the classifier together, with calibrated confidence;
- `orchestrator`: the LLM's prompt and its strict JSON;
- `cascade`: the one object every entry point uses (`build_router`).
"""

from copines.routing.cascade import Router, build_router
from copines.routing.decision import (
    ASSISTANT,
    CONFIDENCE_FLOOR,
    REASONS,
    Decision,
    finish,
)
from copines.routing.local import LocalRouter
from copines.routing.orchestrator import (
    OrchestratorAnswer,
    orchestrator_messages,
    orchestrator_prompt,
    parse_orchestrator,
)
from copines.routing.small_talk import ASSISTANT_COLOR

__all__ = [
    "ASSISTANT",
    "ASSISTANT_COLOR",
    "CONFIDENCE_FLOOR",
    "REASONS",
    "Decision",
    "LocalRouter",
    "OrchestratorAnswer",
    "Router",
    "build_router",
    "finish",
    "orchestrator_messages",
    "orchestrator_prompt",
    "parse_orchestrator",
]
