"""The routing decision: who answers, how sure the router is, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from copines.experts import ESCALATE

ASSISTANT = "assistant"  # small talk: a short reply of the agency's assistant, no expert
CONFIDENCE_FLOOR = 0.7  # the agency's rule: under this, a human takes over

# Why a conversation goes to a human (`Decision.reason`); the hand-off text is keyed on it.
REASONS = (
    "emergency",
    "medical",
    "legal",
    "payment",
    "injection",
    "complaint",
    "human_request",
    "out_of_scope",
    "low_confidence",
)


@dataclass
class Decision:
    """Who answers, and why."""

    agent: str  # an expert id, "assistant" (small talk) or "escalate"
    confidence: float
    primary_need: str = ""
    secondary_needs: list[str] = field(default_factory=list)
    reasoning: str = ""
    router: str = "local"  # local | llm
    scores: dict[str, float] = field(default_factory=dict)  # the classifier's probabilities
    margin: float = 0.0  # best probability minus the runner-up's
    clear: bool = False  # the local router may decide alone
    sentiment_hint: str | None = None
    upsell_hint: bool | None = None
    switched_from: str | None = None
    kept_previous: bool = False  # the conversation's expert answers again
    fallback_reason: str | None = None  # why the orchestrator's answer was not used
    rule: str = ""  # what decided: safety, classifier, orchestrator, low-confidence
    reason: str = ""  # set on every escalation, one of REASONS
    evidence: dict[str, float] = field(default_factory=dict)  # knowledge-base match per expert

    @property
    def escalated(self) -> bool:
        return self.agent == ESCALATE

    @property
    def small_talk(self) -> bool:
        return self.agent == ASSISTANT

    def public(self) -> dict:
        """The fields of the `copines route` contract."""
        return {
            "agent": self.agent,
            "confidence": round(self.confidence, 3),
            "primary_need": self.primary_need,
            "secondary_needs": self.secondary_needs,
            "reasoning": self.reasoning,
            "router": self.router,
            "reason": self.reason,
        }

    def as_dict(self) -> dict:
        return asdict(self)


def finish(decision: Decision, previous_expert: str | None) -> Decision:
    """Record whether the conversation's expert stays or hands over (the decision is final)."""
    if previous_expert and decision.agent not in (ESCALATE, ASSISTANT, previous_expert):
        decision.switched_from = previous_expert
    decision.kept_previous = previous_expert is not None and decision.agent == previous_expert
    return decision
