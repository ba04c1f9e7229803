"""Stored messages read back as turns: what each answer decided, found and cost.

The turn engine writes its decisions into `Message.meta`; this module is the one place that
reads them for the console, so analytics, filters and knowledge gaps agree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from copines.experts import ESCALATE
from copines.routing.decision import ASSISTANT
from copines.store.base import Escalation, Feedback, Message

UNKNOWN = "inconnu"


def _console_tz() -> tzinfo:
    """The agency's time zone: days and hours in the console are French ones."""
    try:
        return ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:  # no tz database (slim images): UTC rather than failing
        return UTC


CONSOLE_TZ = _console_tz()


def _label(value: Any) -> str | None:
    """A label out of a string or a {"label": ...} mapping."""
    if isinstance(value, dict):
        value = value.get("label") or value.get("value") or value.get("sentiment")
    if value is None or value == "":
        return None
    return str(value)


def _triggers(value: Any) -> list[str]:
    """Upsell triggers out of a bool, a list, or a {"triggered", "triggers"/"signals"} mapping."""
    if isinstance(value, dict):
        names = value.get("triggers") or value.get("signals") or value.get("reasons") or []
        if isinstance(names, str):
            names = [names]
        names = [str(n) for n in names if n]
        fired = value.get("triggered", value.get("detected", bool(names)))
        if fired and not names:
            names = [str(value.get("kind") or value.get("type") or "signal")]
        return names if fired else []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v]
    if isinstance(value, str):
        return [value] if value else []
    return ["signal"] if value else []


def _upsell(message: Message) -> list[str]:
    """The upsell triggers of an answer, named by the stored reason when there is one."""
    triggers = _triggers(_meta_get([message], "upsell"))
    reason = _label(_meta_get([message], "upsell_reason"))
    if triggers == ["signal"] and reason:
        return [reason]
    return triggers


def _flag(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("detected", value.get("triggered", value.get("loop", False))))
    return bool(value)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def best_score(message: Message) -> float | None:
    """The best passage score the turn saw (None when it did not search)."""
    meta = message.meta or {}
    for holder in (meta.get("retrieval"), meta):
        if isinstance(holder, dict):
            for key in ("best_score", "top_score", "max_score"):
                if (score := _float(holder.get(key))) is not None:
                    return score
            scores = holder.get("scores")
            if isinstance(scores, list) and scores:
                values = [v for v in (_float(s) for s in scores) if v is not None]
                if values:
                    return max(values)
    scores = [_float(s.get("score")) for s in message.sources if isinstance(s, dict)]
    scores = [s for s in scores if s is not None]
    if scores:
        return max(scores)
    if is_escalation(message):
        return None  # a hand-off keeps no retrieval: the console searches at read time
    if message.agent == ASSISTANT:
        return None  # small talk searches nothing
    if message.agent or isinstance(meta.get("retrieval"), dict):
        return 0.0  # an expert answered: her search found nothing above the threshold
    return None


def is_escalation(message: Message) -> bool:
    meta = message.meta or {}
    return message.agent == ESCALATE or bool(meta.get("escalated")) or bool(meta.get("escalation"))


@dataclass
class Turn:
    """One answer of an expert (or a hand-off) with the question that caused it."""

    message: Message
    question: Message | None
    escalated: bool
    expert: str | None  # the expert who answered, or the closest one for a hand-off
    router: str
    sentiment: str | None
    upsell: list[str]
    loop: bool
    best_score: float | None
    feedback: int | None = None
    feedback_comment: str = ""
    score_at_read_time: bool = False  # best_score searched by the console, not by the turn
    rule: str = ""  # which routing rule decided (the turn's meta)

    @property
    def conversation_id(self) -> str:
        return self.message.conversation_id

    @property
    def day(self) -> date:
        created = self.message.created_at or datetime.min.replace(tzinfo=UTC)
        return created.astimezone(CONSOLE_TZ).date()

    @property
    def question_text(self) -> str:
        return self.question.content if self.question else ""


def _meta_get(messages: list[Message | None], *keys: str) -> Any:
    for message in messages:
        if message is None:
            continue
        meta = message.meta or {}
        for key in keys:
            if meta.get(key) not in (None, ""):
                return meta[key]
        decision = meta.get("decision")
        if isinstance(decision, dict):
            for key in keys:
                if decision.get(key) not in (None, ""):
                    return decision[key]
    return None


def read_turns(
    messages: list[Message],
    feedback: list[Feedback] | None = None,
    escalations: list[Escalation] | None = None,
) -> list[Turn]:
    """The turns among `messages` (any order), oldest first, with their feedback."""
    rating = {f.message_id: f.rating for f in feedback or []}
    comments = {f.message_id: f.comment for f in feedback or [] if f.comment}
    closest = {e.message_id: e.closest_expert for e in escalations or [] if e.message_id}
    last_user: dict[str, Message] = {}
    turns = []
    for message in sorted(messages, key=lambda m: m.id or 0):
        if message.role == "user":
            last_user[message.conversation_id] = message
            continue
        if message.role != "assistant":
            continue
        question = last_user.get(message.conversation_id)
        escalated = is_escalation(message)
        expert = message.agent if message.agent and message.agent != ESCALATE else None
        if escalated and expert is None:
            expert = (
                closest.get(message.id)
                or (question and closest.get(question.id))
                or _label(_meta_get([message], "closest_expert"))
            )
        sentiment = _label(_meta_get([message, question], "sentiment"))
        turns.append(
            Turn(
                message=message,
                question=question,
                escalated=escalated,
                expert=expert,
                router=message.router or _label(_meta_get([message], "router")) or UNKNOWN,
                sentiment=sentiment,
                upsell=_upsell(message),
                loop=_flag(_meta_get([message], "loop")),
                best_score=best_score(message),
                feedback=rating.get(message.id or -1),
                feedback_comment=comments.get(message.id or -1, ""),
                rule=_label(_meta_get([message], "rule")) or "",
            )
        )
    return turns


@dataclass
class ConversationSummary:
    """One conversation as the list shows it."""

    id: str
    started: datetime | None = None
    last: datetime | None = None
    first_question: str = ""
    experts: list[str] = field(default_factory=list)
    turns: int = 0
    messages: int = 0
    escalated: bool = False
    open_escalation: bool = False
    sentiments: set[str] = field(default_factory=set)
    upsell: bool = False
    thumbs_up: int = 0
    thumbs_down: int = 0
    team_replies: int = 0
    cost_usd: float | None = None  # None while no answer reported a cost


def summarise(
    messages: list[Message], turns: list[Turn], escalations: list[Escalation]
) -> dict[str, ConversationSummary]:
    """Per-conversation summaries of the given messages and turns."""
    out: dict[str, ConversationSummary] = {}

    def get(cid: str) -> ConversationSummary:
        return out.setdefault(cid, ConversationSummary(cid))

    for message in sorted(messages, key=lambda m: m.id or 0):
        summary = get(message.conversation_id)
        summary.messages += 1
        summary.started = summary.started or message.created_at
        summary.last = message.created_at
        if message.role == "user" and not summary.first_question:
            summary.first_question = message.content
        if message.role == "team":
            summary.team_replies += 1
    for turn in turns:
        summary = get(turn.conversation_id)
        summary.turns += 1
        if turn.expert and not turn.escalated and turn.expert not in summary.experts:
            summary.experts.append(turn.expert)
        summary.escalated = summary.escalated or turn.escalated
        if turn.sentiment:
            summary.sentiments.add(turn.sentiment)
        summary.upsell = summary.upsell or bool(turn.upsell)
        summary.thumbs_up += turn.feedback == 1
        summary.thumbs_down += turn.feedback == -1
        if turn.message.cost_usd is not None:
            summary.cost_usd = (summary.cost_usd or 0.0) + turn.message.cost_usd
    for escalation in escalations:
        if escalation.conversation_id in out:
            summary = out[escalation.conversation_id]
            summary.escalated = True
            summary.open_escalation = summary.open_escalation or escalation.status == "open"
    return out


def by_conversation(turns: list[Turn]) -> dict[str, list[Turn]]:
    grouped: dict[str, list[Turn]] = defaultdict(list)
    for turn in turns:
        grouped[turn.conversation_id].append(turn)
    return grouped
