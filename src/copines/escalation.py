"""Hand-offs to a human: the visitor's message, the record with a brief, the webhook."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from copines.experts import ESCALATE
from copines.postprocess import complaint
from copines.providers.http import retry_delay
from copines.routing import Decision
from copines.store.base import Escalation, Message, Store

log = logging.getLogger("copines.escalation")

HUMAN_ASKED = "demande à parler à une personne de l'équipe"
COMPLAINT_NEED = "mécontentement ou réclamation"

FOLLOW_UP = (
    "Une personne de l'équipe revient vers toi ici dès que possible, en général sous 24 h ouvrées."
)
# What she reads, by the reason the conversation goes to a human (`Decision.reason`).
HANDOFF = {
    # Whom to call comes first: nothing else in the message matters as much.
    "emergency": (
        "Si toi ou quelqu'un près de toi êtes en danger, appelle tout de suite le 15 (SAMU) ou "
        "le 112 (urgences, depuis n'importe quel téléphone). Si tu traverses une détresse ou "
        "des idées suicidaires, le 3114 t'écoute 24 h/24, gratuitement. Je préviens aussi "
        "l'équipe de L'Agence des Copines, qui revient vers toi ici au plus vite."
    ),
    "medical": (
        "Je ne peux pas te donner d'avis sur une question de santé, de symptôme ou de "
        "traitement : c'est le rôle d'un médecin ou d'un pharmacien. Je transmets ta question "
        f"à l'équipe de L'Agence des Copines, qui pourra t'orienter. {FOLLOW_UP}"
    ),
    "legal": (
        "Les questions juridiques, fiscales ou de statut demandent l'avis d'un professionnel "
        "(avocat, expert-comptable) : je ne peux pas y répondre moi-même. Je transmets ta "
        f"question à l'équipe de L'Agence des Copines, qui pourra t'orienter. {FOLLOW_UP}"
    ),
    "payment": (
        "Un souci de paiement, de facture ou d'accès à ton espace, ça se règle avec une "
        "personne de l'équipe : je lui transmets ta demande tout de suite, avec ton message. "
        f"{FOLLOW_UP}"
    ),
    "injection": (
        "Je ne peux pas faire ça. Je suis là pour t'aider sur tes tunnels de vente, tes emails, "
        "ton contenu et Instagram. Je transmets ta demande à l'équipe de L'Agence des Copines, "
        "qui verra avec toi ce dont tu as besoin."
    ),
    "complaint": (
        "Je suis vraiment désolée que ton expérience ne soit pas à la hauteur de ce que tu "
        "attendais. Je transmets ton message à l'équipe de L'Agence des Copines : une personne "
        "va le lire et revenir vers toi ici, en général sous 24 h ouvrées, pour trouver une "
        "solution avec toi."
    ),
    "human_request": (
        "Bien sûr ! J'ai transmis ta demande à l'équipe de L'Agence des Copines : une "
        "personne de l'équipe va reprendre la conversation et te répondre ici dès que "
        "possible, en général sous 24 h ouvrées. 🤝"
    ),
    "out_of_scope": (
        "Ta question sort du champ de nos expertes, alors je la transmets à l'équipe humaine "
        f"de L'Agence des Copines, qui pourra te répondre correctement. {FOLLOW_UP} En "
        "attendant, pour tes tunnels, tes emails, ton contenu ou Instagram, je suis là !"
    ),
    "low_confidence": (
        "Pour être sûre de bien te répondre, je confie ta question à l'équipe humaine de "
        f"L'Agence des Copines, qui a tout le contexte. {FOLLOW_UP}"
    ),
}
REASONS = frozenset(HANDOFF)


def handoff_reason(decision: Decision) -> str:
    """Why the conversation goes to a human: the router's reason, else read from its rule."""
    if decision.reason in REASONS:
        return decision.reason
    if decision.primary_need == HUMAN_ASKED:
        return "human_request"
    if decision.rule in ("escalate-pattern", "off-topic"):
        return "out_of_scope"
    return "low_confidence"


def handoff_message(decision: Decision) -> str:
    """What the visitor reads when a human takes over (French, "tu"), fitting its reason."""
    return HANDOFF[handoff_reason(decision)]


# Reasons a complaint does not override: the router saw something that matters more.
_KEEP = frozenset({"emergency", "medical", "legal", "payment", "injection", "human_request"})


def with_complaint(decision: Decision, message: str) -> Decision:
    """The decision, turned into a hand-off when the message is a complaint, a refund
    request or an insult (she gets an apology and a human, not an expert's advice)."""
    kind = complaint(message)
    # A refund request is a complaint even when a rule saw a payment problem: it gets the apology.
    keep = _KEEP - {"payment"} if kind == "refund" else _KEEP
    if not kind or (decision.escalated and handoff_reason(decision) in keep):
        return decision
    return replace(
        decision,
        agent=ESCALATE,
        reason="complaint",
        rule="complaint",
        primary_need=COMPLAINT_NEED,
        reasoning=f"message de mécontentement ({kind})",
        sentiment_hint="negative",
        upsell_hint=False,
    )


def build_brief(message: str, history: list[Message], decision: Decision) -> str:
    """A few lines that let a human pick up the conversation without reading all of it."""
    lines = [f"Motif : {decision.primary_need or 'hors du champ des expertes'}."]
    if decision.reasoning:
        lines.append(f"Pourquoi : {decision.reasoning}.")
    lines.append(f"Message : « {message.strip()[:400]} »")
    earlier = [m for m in history if m.role in ("user", "assistant", "team")][-4:]
    if earlier:
        lines.append("Avant :")
        for m in earlier:
            who = "visiteuse" if m.role == "user" else (m.agent or m.role)
            lines.append(f"- [{who}] {m.content.strip()[:160]}")
    return "\n".join(lines)


def closest_expert(decision: Decision) -> str | None:
    """The expert the local scores put nearest, for the human's context."""
    scores = {k: v for k, v in decision.scores.items() if k not in ("escalate", "assistant")}
    return max(scores, key=scores.get) if scores else None  # type: ignore[arg-type]


class Background:
    """Work that runs after the visitor has her answer; `drain` awaits it at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %s", task.get_name(), task.exception())

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for every task still running (up to `timeout` seconds)."""
        while self._tasks:
            tasks = list(self._tasks)
            done, _ = await asyncio.wait(tasks, timeout=timeout)
            if not done:
                log.error("%d background tasks still running after %.0fs", len(tasks), timeout)
                return


class WebhookNotifier:
    """POSTs each escalation as JSON to the configured URL, retried, in the background."""

    def __init__(
        self, url: str | None, *, retries: int = 3, timeout: float = 5.0, backoff: float = 0.5
    ):
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self._client = (
            httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=3.0)) if url else None
        )

    async def send(self, payload: dict[str, Any]) -> bool:
        """True once the receiver answered 2xx; False after the last attempt (logged)."""
        if not self.url or self._client is None:
            return False
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = await self._client.post(self.url, json=payload)
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    log.error("escalation webhook refused the payload (%s); not retrying", problem)
                    return False
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt < self.retries:
                await asyncio.sleep(retry_delay(attempt + 1, response, self.backoff))
        log.error("escalation webhook failed after %d attempts (%s)", self.retries + 1, problem)
        return False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def record_escalation(
    store: Store,
    *,
    conversation_id: str,
    message_id: int | None,
    message: str,
    history: list[Message],
    decision: Decision,
) -> Escalation:
    """Store the escalation (status open) with its brief for the human."""
    escalation = Escalation(
        conversation_id=conversation_id,
        reason=decision.reasoning or decision.primary_need or "hors champ",
        primary_need=decision.primary_need,
        brief=build_brief(message, history, decision),
        closest_expert=closest_expert(decision),
        message_id=message_id,
        meta={
            "router": decision.router,
            "confidence": decision.confidence,
            "rule": decision.rule,
            "reason": handoff_reason(decision),
        },
    )
    await store.add_escalation(escalation)
    return escalation


def webhook_payload(escalation: Escalation) -> dict[str, Any]:
    """The escalation as JSON; `text` makes it a valid Slack incoming-webhook message as is."""
    heading = "Nouvelle demande" if not escalation.merged else "Demande relancée"
    return {
        "text": f"{heading} pour l'équipe ({escalation.reason}) : {escalation.brief[:1500]}",
        "event": "escalation",
        "escalation_id": escalation.id,
        "conversation_id": escalation.conversation_id,
        "message_id": escalation.message_id,
        "reason": escalation.reason,
        "primary_need": escalation.primary_need,
        "brief": escalation.brief,
        "closest_expert": escalation.closest_expert,
        "status": escalation.status,
        "updated": escalation.merged,  # a later hand-off of a conversation already waiting
        "created_at": datetime.now(UTC).isoformat(),
    }
