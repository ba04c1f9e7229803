"""The cascade, written once: the local router, then the LLM orchestrator where it is unsure.

- A safety rule, or a classifier confidence at or above `alone`, decides alone. `alone` is
  picked on the dev part: the lowest confidence from which the 95% one-sided Wilson lower
  bound of the precision of every decision taken alone (the safety rules' included) is at
  least 0.97 (`classifier.pick_alone`).
- Otherwise, with a model, the orchestrator decides (strict JSON); anything wrong with its
  answer falls back to the local decision.
- Whoever decides, a confidence under 0.7 hands the conversation to a human
  (`reason="low_confidence"`): offline, and when the orchestrator fails, too.

`copines route`, `copines ask` and the API build it with `build_router`, from the same settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np

from copines.experts import ESCALATE, Expert
from copines.providers.chat import ChatClient
from copines.routing.classifier import Model
from copines.routing.decision import CONFIDENCE_FLOOR, Decision, finish
from copines.routing.local import LocalRouter
from copines.routing.orchestrator import orchestrator_messages, parse_orchestrator
from copines.store.base import Message

log = logging.getLogger("copines.routing")

T = TypeVar("T")


class Router:
    """Local first; the orchestrator when the local router is not sure enough."""

    def __init__(
        self,
        experts: dict[str, Expert],
        local: LocalRouter,
        chat: ChatClient | None,
        *,
        orchestrator_model: str = "",
        timeout: float = 4.0,
        alone: float | None = None,
        floor: float = CONFIDENCE_FLOOR,
    ):
        self.experts = experts
        self.local = local
        self.chat = chat
        self.orchestrator_model = orchestrator_model
        self.timeout = timeout
        self.alone = local.alone if alone is None else alone
        self.floor = floor

    @property
    def llm_enabled(self) -> bool:
        return self.chat is not None and bool(self.orchestrator_model)

    async def prepare(self) -> None:
        await self.local.prepare()

    def needs_orchestrator(self, local: Decision) -> bool:
        if not self.llm_enabled or local.rule == "safety":
            return False
        return local.confidence < self.alone

    async def route(
        self,
        message: str,
        vector: np.ndarray,
        history: list[Message],
        previous_expert: str | None = None,
        *,
        alongside: Callable[[Decision], Awaitable[T]] | None = None,
        timings: dict[str, float] | None = None,
    ) -> tuple[Decision, dict | None, T | None]:
        """Who answers: (decision, orchestrator usage or None, `alongside`'s result or None).

        `alongside(local)` runs while the orchestrator thinks (the turn searches the bases
        then); it is not called when the local decision stands.
        """
        local = await self.local.decide(message, vector, history, previous_expert)
        local.clear = local.rule == "safety" or local.confidence >= self.alone
        if not self.needs_orchestrator(local):
            return self._finish(local, previous_expert), None, None
        if alongside is None:
            decision, usage = await self.ask_orchestrator(message, history, local, timings)
            return self._finish(decision, previous_expert), usage, None
        (decision, usage), extra = await asyncio.gather(
            self.ask_orchestrator(message, history, local, timings), alongside(local)
        )
        return self._finish(decision, previous_expert), usage, extra

    def _finish(self, decision: Decision, previous_expert: str | None) -> Decision:
        """The agency's rule, then the switch of expert."""
        if decision.agent != ESCALATE and decision.confidence < self.floor:
            decision.reasoning = (
                f"{decision.reasoning} (confiance {decision.confidence:.2f} sous "
                f"{self.floor} : l'équipe prend le relais)"
            )
            decision.agent = ESCALATE
            decision.reason = "low_confidence"
            decision.rule = "low-confidence"
            decision.primary_need = decision.primary_need or "besoin à préciser"
        elif decision.agent == ESCALATE and not decision.reason:
            decision.reason = "out_of_scope"
        return finish(decision, previous_expert)

    async def ask_orchestrator(
        self,
        message: str,
        history: list[Message],
        local: Decision,
        timings: dict[str, float] | None = None,
    ) -> tuple[Decision, dict]:
        """The orchestrator's decision, or the local one when it fails (never raises).

        Returns the decision and the call's usage ({model, prompt_tokens, ..., error}).
        """
        assert self.chat is not None
        usage: dict[str, Any] = {"model": self.orchestrator_model}
        started = asyncio.get_running_loop().time()
        try:
            result = await asyncio.wait_for(
                self.chat.complete(
                    orchestrator_messages(self.experts, message, history),
                    self.orchestrator_model,
                    temperature=0.2,
                    max_tokens=250,
                    timeout=self.timeout,
                    fallback=False,
                    json_mode=True,
                ),
                self.timeout,
            )
            usage.update(
                model=result.model,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                cost_usd=result.usage.cost_usd,
            )
            answer = parse_orchestrator(result.text, self.experts)
        except TimeoutError:
            return self._fallback(local, "orchestrator timed out"), usage | {"error": "timeout"}
        except Exception as exc:  # noqa: BLE001 - any failure means: use the local decision
            reason = str(exc)[:200]
            log.warning("orchestrator unusable (%s); local decision stands", reason)
            return self._fallback(local, reason), usage | {"error": reason}
        finally:
            if timings is not None:
                timings["orchestrator"] = round(
                    (asyncio.get_running_loop().time() - started) * 1000, 3
                )
        decision = Decision(
            answer.agent,
            answer.confidence,
            primary_need=answer.primary_need,
            secondary_needs=list(answer.secondary_needs),
            reasoning=answer.reasoning,
            router="llm",
            scores=local.scores,
            margin=local.margin,
            sentiment_hint=answer.sentiment,
            upsell_hint=answer.upsell,
            rule="orchestrator",
            evidence=local.evidence,
        )
        if decision.agent == ESCALATE:
            decision.reason = answer.reason or local.reason or "out_of_scope"
        return decision, usage

    @staticmethod
    def _fallback(local: Decision, reason: str) -> Decision:
        local.fallback_reason = reason
        local.router = "local"
        return local


def build_router(
    deps: Any,
    chat: ChatClient | None = None,
    *,
    local_only: bool = False,
    model: Model | None = None,
) -> Router:
    """The cascade from the settings (every command and the API build it here).

    `deps`: the process's `Deps` (experts, embedder, store, settings); `chat`: the chat client
    (None: offline, or `local_only`); `model`: another trained model than the shipped one.
    """
    settings = deps.settings
    local = LocalRouter(deps.experts, deps.embedder, deps.store, model=model)
    return Router(
        deps.experts,
        local,
        None if local_only else chat,
        orchestrator_model=settings.orchestrator_model,
        timeout=settings.orchestrator_timeout,
        alone=settings.router_decide_alone,
    )
