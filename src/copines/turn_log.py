"""The turn's one structured log line, with the agency's monitoring fields."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from copines.postprocess import Analysis

log = logging.getLogger("copines.turn")


def log_turn(turn: Any, result: Any, analysis: Analysis, *, with_text: bool = False) -> None:
    """One JSON line with the agency's monitoring fields (no text unless allowed, no keys)."""
    if not log.isEnabledFor(logging.INFO):
        return  # not built at all when nobody reads it (a warning-level server)
    decision = turn.decision
    assert decision is not None
    orch = turn.orchestrator_usage or {}
    prompt_tokens, completion_tokens, cost = turn.usage()
    passages = turn.retrieval.passages if turn.retrieval else []
    spent = getattr(turn, "spend", None)
    extra_cost = (spent.embedding_cost_usd + spent.rerank_cost_usd) if spent else 0.0
    chat_cost = (turn.chat.usage.cost_usd or 0.0) if turn.chat else 0.0
    line: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(),
        "event": "turn",
        "conversation_id": turn.conversation_id,
        "message_id": result.message_id,
        "user_message_length": len(turn.message),
        "orchestrator_decision": {
            "agent": decision.agent,
            "confidence": round(decision.confidence, 3),
            "reasoning": decision.reasoning,
            "router": decision.router,
            "rule": decision.rule,
            "reason": decision.reason or None,
            "switched_from": decision.switched_from,
            "fallback_reason": decision.fallback_reason,
        },
        "rag_results": {
            "chunks_found": turn.retrieval.candidates if turn.retrieval else 0,
            "reranked_top_3": [p.filename for p in passages],
            "sources": [p.title for p in passages],
        },
        "agent_response_length": len(result.response),
        "total_time_ms": turn.timings.get("total"),
        "timings_ms": turn.timings,
        "model_used": result.model,
        "orchestrator_model": orch.get("model"),
        "tokens_used": {"prompt": prompt_tokens, "completion": completion_tokens},
        "cost_usd": round((cost or 0.0) + extra_cost, 8),
        "cost_breakdown_usd": {
            "chat": chat_cost,
            "orchestrator": orch.get("cost_usd") or 0.0,
            "embeddings": round(spent.embedding_cost_usd, 8) if spent else 0.0,
            "rerank": round(spent.rerank_cost_usd, 8) if spent else 0.0,
        },
        "embedding_tokens": spent.embedding_tokens if spent else 0,
        "rerank_searches": spent.rerank_searches if spent else 0,
        "router": decision.router,
        "fallback_used": bool(turn.chat and turn.chat.fell_back),
        "model_attempts": list(turn.chat.attempts) if turn.chat else [],
        "status": getattr(turn, "status", "ok"),
        "error_class": getattr(turn, "cause", None) if result.error else None,
        "escalated": result.escalated,
        "sentiment": analysis.sentiment,
        "upsell": analysis.upsell,
        "loop_detected": analysis.loop,
        "error": result.error,
    }
    if with_text:
        line["message"] = turn.message
        line["response"] = result.response
    # The message is the line itself (readable under any formatter); copines.logs' JSON
    # formatter merges `fields` into its own object instead.
    log.info(json.dumps(line, ensure_ascii=False, default=str), extra={"fields": line})
