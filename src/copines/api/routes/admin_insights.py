"""Console pages over stored turns: the conversations (filtered) and the analytics."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException, Request

from copines.admin import charts
from copines.admin.analytics import Analytics, compute, step_label
from copines.admin.turns import UNKNOWN, ConversationSummary, read_turns, summarise
from copines.api.routes.admin_common import (
    SENTIMENT_LABELS,
    ApiSession,
    DepsDep,
    PageSession,
    day_bounds,
    fmt_money,
    fmt_pct,
    owner_color,
    owner_name,
    period,
    render,
)
from copines.deps import Deps
from copines.experts import ESCALATE
from copines.routing.decision import ASSISTANT

router = APIRouter()
PAGE_SIZE = 50
SENTIMENT_COLORS = {
    "positive": "#217a5a",
    "positif": "#217a5a",
    "neutral": "#6b6375",
    "neutre": "#6b6375",
    "negative": "#b3261e",
    "négatif": "#b3261e",
    "frustrated": "#b03a2e",
    "frustré": "#b03a2e",
}


async def _period_data(deps: Deps, since: str | None, until: str | None):
    """Messages, turns and escalations of a period, read once."""
    start, end = period(since, until)
    lo, hi = day_bounds(start, end)
    messages = await deps.store.messages_between(lo, hi)
    escalations = await deps.store.list_escalations(None)
    feedback = await deps.store.list_feedback()
    turns = read_turns(messages, feedback, escalations)
    return start, end, messages, turns, escalations


def _matches(summary: ConversationSummary, f: dict[str, str]) -> bool:
    if f.get("expert") and f["expert"] not in summary.experts:
        return False
    if f.get("escalated") == "oui" and not summary.escalated:
        return False
    if f.get("escalated") == "non" and summary.escalated:
        return False
    if f.get("sentiment") and f["sentiment"] not in summary.sentiments:
        return False
    if f.get("upsell") == "oui" and not summary.upsell:
        return False
    if f.get("upsell") == "non" and summary.upsell:
        return False
    feedback = f.get("feedback")
    if feedback == "positif" and not summary.thumbs_up:
        return False
    if feedback == "negatif" and not summary.thumbs_down:
        return False
    return not (feedback == "aucun" and (summary.thumbs_up or summary.thumbs_down))


@router.get("/conversations")
async def read_conversations(
    request: Request,
    deps: DepsDep,
    session: PageSession,
    expert: str = "",
    escalated: str = "",
    sentiment: str = "",
    upsell: str = "",
    feedback: str = "",
    since: str = "",
    until: str = "",
    page: int = 1,
):
    """Conversations of a period, most recent first, filtered."""
    start, end, messages, turns, escalations = await _period_data(deps, since, until)
    filters = {
        "expert": expert,
        "escalated": escalated,
        "sentiment": sentiment,
        "upsell": upsell,
        "feedback": feedback,
    }
    summaries = summarise(messages, turns, escalations)
    rows = sorted(
        (s for s in summaries.values() if _matches(s, filters)),
        key=lambda s: s.last.timestamp() if s.last else 0,
        reverse=True,
    )
    page = max(page, 1)
    sentiments = sorted(
        {t.sentiment for t in turns if t.sentiment} | {"positive", "neutral", "negative"}
    )
    return render(
        request,
        "admin/conversations.html",
        session,
        section="conversations",
        rows=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        total=len(rows),
        page=page,
        pages=max(1, -(-len(rows) // PAGE_SIZE)),
        filters={**filters, "since": start.isoformat(), "until": end.isoformat()},
        sentiments=sentiments,
        sentiment_label=lambda s: SENTIMENT_LABELS.get(s, s),
    )


@router.get("/conversations/{conversation_id}")
async def read_conversation(
    request: Request, deps: DepsDep, session: PageSession, conversation_id: str
):
    """One transcript with every answer's sources, decision, model, cost and timings."""
    conversation = await deps.store.get_conversation(conversation_id)
    if conversation is None:
        raise HTTPException(status_code=404, detail="conversation introuvable")
    messages = await deps.store.get_messages(conversation_id)
    feedback = await deps.store.list_feedback(conversation_id)
    escalations = [
        e for e in await deps.store.list_escalations(None) if e.conversation_id == conversation_id
    ]
    turns = {t.message.id: t for t in read_turns(messages, feedback, escalations)}
    return render(
        request,
        "admin/conversation.html",
        session,
        section="conversations",
        conversation=conversation,
        messages=messages,
        turns=turns,
        escalations=escalations,
        total_cost=sum(m.cost_usd for m in messages if m.cost_usd is not None)
        if any(m.cost_usd is not None for m in messages)
        else None,
    )


def _charts(deps: Deps, figures: Analytics) -> dict:
    labels = [d.strftime("%d/%m") for d in figures.days]
    who = [*deps.experts, ASSISTANT, ESCALATE, UNKNOWN]
    series = [
        (
            owner_name(deps, w),
            owner_color(deps, w) if w != ESCALATE else "#9a5b00",
            [figures.per_day[d][w] for d in figures.days],
        )
        for w in who
        if figures.per_expert[w]
    ]
    palette = ["#7c5cbf", "#217a5a", "#9a5b00", "#2f6f9e", "#a8385a", "#6b6375"]
    return {
        "turns": charts.columns(
            labels, series, title="Tours par jour et par experte", integer=True
        ),
        "cost": charts.columns(
            labels,
            [("Coût", "#7c5cbf", [figures.cost_per_day[d] for d in figures.days])],
            title="Coût par jour",
            fmt=fmt_money,
        ),
        "routing": charts.bars(
            [
                (r, n, palette[i % len(palette)])
                for i, (r, n) in enumerate(figures.routing.most_common())
            ],
            title="Routage",
        ),
        "sentiment": charts.bars(
            [
                (SENTIMENT_LABELS.get(s, s), n, SENTIMENT_COLORS.get(s, "#6b6375"))
                for s, n in figures.sentiment.most_common()
            ],
            title="Sentiment",
        ),
        "upsell": charts.bars(
            [(t, n, "#a8385a") for t, n in figures.upsell_triggers.most_common(8)],
            title="Signaux d'upsell",
        ),
        "latency": charts.bars(
            [(step_label(lat.step), lat.p95, "#2f6f9e") for lat in figures.latency],
            title="Latence p95 par étape (ms)",
            fmt=lambda v: f"{v:.0f} ms",
            width=380,
        ),
    }


@router.get("/analytics")
async def read_analytics(
    request: Request, deps: DepsDep, session: PageSession, since: str = "", until: str = ""
):
    """Volumes, routing, escalations, sentiment, upsell, feedback, cost and latency."""
    start, end, _, turns, _ = await _period_data(deps, since, until)
    figures = compute(turns, start, end)
    return render(
        request,
        "admin/analytics.html",
        session,
        section="analytics",
        figures=figures,
        charts=_charts(deps, figures),
        since=start.isoformat(),
        until=end.isoformat(),
        pct=fmt_pct,
        sentiment_label=lambda s: SENTIMENT_LABELS.get(s, s),
    )


@router.get("/api/analytics")
async def read_analytics_json(
    deps: DepsDep, session: ApiSession, since: str = "", until: str = ""
) -> dict:
    """The analytics figures as JSON."""
    start, end, _, turns, _ = await _period_data(deps, since, until)
    figures = compute(turns, start, end)
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "turns": figures.turns,
        "conversations": figures.conversations,
        "turns_per_day": {
            d.isoformat(): dict(figures.per_day[d]) for d in figures.days if figures.per_day[d]
        },
        "per_expert": dict(figures.per_expert),
        "routing": dict(figures.routing),
        "escalations": figures.escalations,
        "escalation_rate": figures.escalation_rate,
        "sentiment": dict(figures.sentiment),
        "upsell_turns": figures.upsell_turns,
        "upsell_triggers": dict(figures.upsell_triggers),
        "loops": figures.loops,
        "thumbs_up": figures.thumbs_up,
        "thumbs_down": figures.thumbs_down,
        "feedback_ratio": figures.feedback_ratio,
        "cost_total": figures.cost_total,
        "cost_per_day": {d.isoformat(): c for d, c in figures.cost_per_day.items() if c},
        "cost_per_conversation": figures.cost_per_conversation,
        "latency_ms": {lat.step: asdict(lat) for lat in figures.latency},
    }
