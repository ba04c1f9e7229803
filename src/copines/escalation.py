"""Hand-offs to a human: the visitor's message, the record with a brief, the webhook."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx

from copines.providers.http import retry_delay
from copines.routing import Decision
from copines.store.base import Escalation, Message, Store

log = logging.getLogger("copines.escalation")

HUMAN_ASKED = "demande à parler à une personne de l'équipe"


def handoff_message(decision: Decision) -> str:
    """What the visitor reads when a human takes over (French, "tu")."""
    follow_up = (
        "Une personne de l'équipe revient vers toi ici dès que possible, en général sous "
        "24 h ouvrées."
    )
    if decision.primary_need == HUMAN_ASKED:
        return (
            "Bien sûr ! J'ai transmis ta demande à l'équipe de L'Agence des Copines : une "
            "personne de l'équipe va reprendre la conversation et te répondre ici dès que "
            "possible, en général sous 24 h ouvrées. 🤝"
        )
    if decision.rule in ("escalate-pattern", "off-topic"):
        return (
            "Merci pour ta question ! Elle sort du champ de nos expertes, alors je la transmets "
            "à l'équipe humaine de L'Agence des Copines, qui pourra te répondre correctement. "
            f"{follow_up} En attendant, pour tes tunnels, tes emails, ton contenu ou Instagram, "
            "je suis là !"
        )
    return (
        "Merci pour ta question ! Pour être sûre de bien y répondre, je la confie à l'équipe "
        f"humaine de L'Agence des Copines, qui a tout le contexte. {follow_up}"
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
    scores = {k: v for k, v in decision.scores.items() if k != "escalate"}
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
        meta={"router": decision.router, "confidence": decision.confidence, "rule": decision.rule},
    )
    await store.add_escalation(escalation)
    return escalation


def webhook_payload(escalation: Escalation) -> dict[str, Any]:
    return {
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
