"""One conversation turn, end to end: route, retrieve, generate, post-process, save, log.

`TurnRunner.run` returns the whole result; `TurnRunner.stream` yields events as they happen
(decision, sources, tokens, done). The visitor's message is committed before generation; the
answer is committed with its metadata before `done`; webhooks run in the background and are
drained at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from copines.deps import Deps
from copines.errors import InputError, NotFoundError, ProviderError, StoreBusyError
from copines.escalation import (
    Background,
    WebhookNotifier,
    handoff_message,
    record_escalation,
    webhook_payload,
    with_complaint,
)
from copines.knowledge.retrieval import RetrievalResult
from copines.mail import Mailer
from copines.postprocess import ACCOMPANIMENT_NOTE, Analysis, analyze, format_answer
from copines.prompts import expert_messages
from copines.providers import spend
from copines.providers.chat import ChatClient, ChatResult, StreamCut
from copines.providers.offline import OFFLINE_MODEL, OfflineResponder
from copines.routing import (
    ASSISTANT,
    ASSISTANT_COLOR,
    Decision,
    build_router,
)
from copines.routing.local import last_agent
from copines.routing.small_talk import reply as small_talk_reply
from copines.store.base import Conversation, Message, Passage
from copines.text import initials_of
from copines.turn_log import log_turn

log = logging.getLogger("copines.turn")

TEAM_NAME = "L'équipe"
TEAM_COLOR = "#6B7280"
DELETED = "Cette conversation a été supprimée : sa réponse n'est pas enregistrée."
APOLOGY = (
    "Oups, je n'ai pas réussi à te répondre cette fois-ci : le service qui rédige les réponses "
    "ne répond pas. Ton message est bien enregistré. Réessaie dans un instant, ou demande à "
    "parler à l'équipe et une personne de l'agence te répondra."
)
# What the visitor reads when an answer stops half-way (the text she read is kept).
CUT_SHORT = (
    "La réponse s'est interrompue avant la fin. Ce qui est écrit au-dessus est bien "
    "enregistré : renvoie ta question pour avoir la suite, ou demande à parler à l'équipe."
)
SHUTTING_DOWN = (
    "Le service redémarre à l'instant : ton message est bien enregistré. Renvoie-le dans une "
    "minute pour avoir ta réponse."
)
# The public error codes of a turn (the detail from the provider stays in the stored metadata).
ERROR_MESSAGES = {
    "model_unavailable": APOLOGY,
    "truncated": CUT_SHORT,
    "shutdown": SHUTTING_DOWN,
}
LOOP_PREVIOUS = 4  # how many of the visitor's earlier messages loop detection compares
SPECULATIVE_SEARCHES = 2  # bases searched while the orchestrator thinks
FOLLOW_UP_WORDS = 12  # a message this short that stays with the expert is read as a follow-up


@dataclass
class TurnResult:
    conversation_id: str
    message_id: int | None
    user_message_id: int
    response: str
    agent: str
    agent_name: str
    confidence: float
    router: str
    sources: list[dict]
    escalated: bool
    loop_detected: bool
    sentiment: str
    upsell: bool
    model: str
    timings_ms: dict[str, float]
    error: str | None = None
    # Tokens and cost as stored with the answer (for the metrics; not part of the public object).
    usage: dict[str, Any] | None = field(default=None, repr=False)

    def to_public(self) -> dict:
        """JSON-ready dict of every public field (copies: `asdict`'s deep copy cost 2% of a
        turn's CPU under load, for values that are plain already)."""
        public = {f.name: getattr(self, f.name) for f in _RESULT_FIELDS}
        public["sources"] = [dict(source) for source in self.sources]
        public["timings_ms"] = dict(self.timings_ms)
        return public


_RESULT_FIELDS = [f for f in fields(TurnResult) if f.name != "usage"]


@dataclass
class TurnEvent:
    event: str  # decision | token | sources | done | error
    data: dict
    result: TurnResult | None = None  # on `done`


@dataclass
class _Turn:
    """The state of one turn while it runs."""

    conversation_id: str
    message: str
    conversation: Conversation | None = None  # when the caller has just read or created it
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    history: list[Message] = field(default_factory=list)
    vector: np.ndarray | None = None
    user_message_id: int = 0
    decision: Decision | None = None
    previous_expert: str | None = None
    retrieval: RetrievalResult | None = None
    orchestrator_usage: dict | None = None
    chat: ChatResult | None = None
    model_ms: float = 0.0  # time spent waiting on models (excluded from the overhead)
    result: TurnResult | None = None
    stored: bool = False  # the answer's write has started: a cancelled turn does not save it again
    spans: dict[str, list[float]] = field(default_factory=dict)  # step: [start, end] ms
    text: str = ""  # the answer as generated (before post-processing)
    model: str = ""
    error: str | None = None
    partial: str = ""  # what a failed stream had sent
    detail: str | None = None  # the provider's failure, for the stored metadata and the log
    shown: list[str] = field(default_factory=list)  # the pieces sent to the visitor so far
    status: str = "ok"  # ok | failed (the apology) | truncated (the text shown, cut short)
    cause: str | None = None  # why a turn failed or was cut (stored in the metadata)
    spend: spend.Spend = field(default_factory=spend.Spend)  # embeddings and rerank

    def usage(self) -> tuple[int, int, float | None]:
        """Prompt tokens, completion tokens and dollars of the turn (orchestrator + expert)."""
        orch = self.orchestrator_usage or {}
        chat = self.chat.usage if self.chat else None
        prompt = (chat.prompt_tokens if chat else 0) + int(orch.get("prompt_tokens") or 0)
        completion = (chat.completion_tokens if chat else 0) + int(
            orch.get("completion_tokens") or 0
        )
        costs = [c for c in ((chat.cost_usd if chat else None), orch.get("cost_usd")) if c]
        return prompt, completion, (round(sum(costs), 8) if costs else None)

    def span(self, step: str, start: float, end: float) -> None:
        self.spans[step] = [
            round((start - self.started) * 1000, 3),
            round((end - self.started) * 1000, 3),
        ]

    def mark(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[step] = round((now - since) * 1000, 3)
        return now


def _source(p: Passage) -> dict:
    return {
        "filename": p.filename,
        "title": p.title,
        "owner": p.owner,
        "score": round(float(p.score), 4),
        "heading": p.heading_path,
        "url": p.url,
    }


class TurnRunner:
    """Runs turns for one process; build it once (it holds the router and the clients)."""

    def __init__(self, deps: Deps):
        self.deps = deps
        settings = deps.settings
        self.settings = settings
        chat = getattr(deps, "chat", None)
        self._own_chat = False
        if chat is None and settings.llm_enabled:
            chat = ChatClient.from_settings(settings)
            self._own_chat = True
        self.chat: ChatClient | None = chat
        self.router = build_router(deps, chat)
        self.offline = OfflineResponder(max_words=settings.max_answer_words)
        self.background = Background()
        self.webhook = WebhookNotifier(settings.escalation_webhook)
        self.stopping = False  # set by begin_shutdown: new turns are refused
        self.mailer = Mailer(settings, deps.keys.link)

    async def prepare(self) -> None:
        """Load the router and embed the experts' exemplars before the first visitor's turn."""
        await self.router.prepare()

    async def drain(self) -> None:
        """Wait for the writes and webhooks still running after answers (call at shutdown)."""
        await self.background.drain()

    async def aclose(self) -> None:
        """Drain, then release the clients this runner opened."""
        await self.drain()
        await self.webhook.aclose()
        if self._own_chat and self.chat is not None:
            await self.chat.aclose()

    # Public interface ------------------------------------------------------------------
    async def run(
        self, conversation_id: str, message: str, *, conversation: Conversation | None = None
    ) -> TurnResult:
        """One whole turn. Raises InputError (bad message) or NotFoundError (no conversation).

        `conversation`, when the caller has just read or created it, saves reading it again.
        """
        turn = _Turn(conversation_id, message, conversation)
        async for _ in self._turn(turn, streaming=False):
            pass
        assert turn.result is not None
        return turn.result

    async def stream(
        self, conversation_id: str, message: str, *, conversation: Conversation | None = None
    ) -> AsyncIterator[TurnEvent]:
        """The turn as events: decision, sources, token..., done (or error)."""
        turn = _Turn(conversation_id, message, conversation)
        try:
            async for event in self._turn(turn, streaming=True):
                yield event
        except (InputError, NotFoundError):
            raise
        except (GeneratorExit, asyncio.CancelledError):
            # The client left, or the server stopped the turn past its shutdown grace: what
            # was accepted is kept, and so is the text she had already read.
            if turn.user_message_id and not turn.stored:
                self.background.spawn(self._save_interrupted(turn), name="save-interrupted")
            raise

    # The turn, step by step ------------------------------------------------------------
    async def _turn(self, turn: _Turn, *, streaming: bool) -> AsyncIterator[TurnEvent]:
        deps, settings = self.deps, self.settings
        message = self._validate(turn.message)
        turn.message = message
        turn.spend = spend.start()  # embeddings and rerank of this turn count here

        # 1-2. The conversation, its history and the message's embedding, concurrently (a
        # conversation the caller has just opened is not read again; a new one has no history).
        t = time.perf_counter()
        conversation = turn.conversation
        if conversation is None:
            conversation, turn.vector, turn.history = await asyncio.gather(
                deps.store.get_conversation(turn.conversation_id),
                deps.embedder.embed_one(message),
                deps.store.get_messages(turn.conversation_id, limit=settings.history_turns),
            )
        elif conversation.messages == 0:
            turn.vector = await deps.embedder.embed_one(message)
        else:
            turn.vector, turn.history = await asyncio.gather(
                deps.embedder.embed_one(message),
                deps.store.get_messages(turn.conversation_id, limit=settings.history_turns),
            )
        if conversation is None:
            raise NotFoundError(
                f"no conversation '{turn.conversation_id}'; start one first (POST /api/chat "
                "without conversation_id)"
            )
        turn.previous_expert = conversation.expert
        t = turn.mark("load", t)
        # The visitor's message is committed while routing runs, always before generation.
        save_user = asyncio.create_task(
            deps.store.add_message(Message(turn.conversation_id, "user", message))
        )
        earlier_task = asyncio.create_task(self._earlier_vectors(turn))

        # 3. Routing (and 4. speculative retrieval while the orchestrator thinks).
        try:
            await self._route_and_retrieve(turn)
        finally:
            turn.user_message_id = await save_user
        t = time.perf_counter()
        assert turn.decision is not None
        decision = turn.decision = with_complaint(turn.decision, message)
        if decision.escalated:
            turn.retrieval = None  # a human answers: no passages, no sources
        yield TurnEvent("decision", self._decision_event(decision))
        passages = turn.retrieval.passages if turn.retrieval else []
        sources = [_source(p) for p in passages]
        if sources:
            yield TurnEvent("sources", {"sources": sources})

        # 5. Generation (or the hand-off message).
        async for event in self._generate(turn, passages, streaming):
            yield event
        text, model, error = turn.text, turn.model, turn.error
        t = turn.mark("generation", t)

        # 6. Post-processing.
        analysis = analyze(
            message,
            turn.vector,
            await earlier_task,
            earlier=[m.content for m in turn.history if m.role == "user"][-LOOP_PREVIOUS:],
            sentiment_hint=decision.sentiment_hint,
            upsell_hint=decision.upsell_hint,
        )
        if error is None and not decision.escalated:
            text = format_answer(text, settings.max_answer_words)
            if analysis.loop:
                text = f"{text}\n\n{ACCOMPANIMENT_NOTE}"
        t = turn.mark("postprocess", t)
        if streaming and (decision.escalated or self.chat is None):
            for piece in _pieces(text):
                yield TurnEvent("token", {"text": piece})
        elif streaming and analysis.loop:
            yield TurnEvent("token", {"text": f"\n\n{ACCOMPANIMENT_NOTE}"})

        # 7. Persistence of the answer (its stored timings stop where the write starts), then
        # the escalation and the expert of the conversation.
        self._close_timings(turn)
        result = await self._save(turn, text, model, sources, analysis, error)
        turn.mark("save", t)
        if error is not None:
            yield TurnEvent("error", self.error_event(error))
        # 8. The response.
        self._close_timings(turn)
        result.timings_ms = dict(turn.timings)
        turn.result = result
        log_turn(turn, result, analysis, with_text=self.settings.log_message_text)
        yield TurnEvent("done", result.to_public(), result)

    async def _generate(
        self, turn: _Turn, passages: list[Passage], streaming: bool
    ) -> AsyncIterator[TurnEvent]:
        """The answer: hand-off, offline, or the expert's model (tokens yielded when streaming).

        Sets `turn.text`, `turn.model` and, when every model failed, `turn.error` (the text is
        then the French apology).
        """
        deps, settings = self.deps, self.settings
        decision = turn.decision
        assert decision is not None
        turn.model = OFFLINE_MODEL
        if decision.escalated:
            turn.text = handoff_message(decision)
            return
        if decision.small_talk:
            turn.text = small_talk_reply(turn.message, deps.experts)
            return
        expert = deps.experts[decision.agent]
        if self.chat is None:
            turn.text = await self.offline.compose(expert, turn.message, passages, deps.embedder)
            return
        prompt = expert_messages(
            expert,
            passages,
            turn.history,
            turn.message,
            max_words=settings.max_answer_words,
            history_turns=settings.history_turns,
        )
        model_name = settings.expert_model or expert.model
        started = time.perf_counter()
        try:
            if streaming:
                async for event in self._stream_answer(turn, prompt, model_name, expert):
                    yield event
            else:
                turn.chat = await self.chat.complete(
                    prompt, model_name, temperature=expert.temperature
                )
                turn.model, turn.text = turn.chat.model, turn.chat.text
        except StreamCut as exc:
            self._cut_short(turn, exc, model_name)
        except ProviderError as exc:
            self._failed(turn, model_name, "model_unavailable", exc)
        except Exception as exc:  # an answer we could not read is a provider failure too
            log.exception("generation crashed for conversation %s", turn.conversation_id)
            self._failed(turn, model_name, "model_unavailable", exc)
        finally:
            turn.model_ms += (time.perf_counter() - started) * 1000

    async def _stream_answer(
        self, turn: _Turn, prompt: list[dict[str, str]], model_name: str, expert: Any
    ) -> AsyncIterator[TurnEvent]:
        """The model's answer as token events; every piece sent is kept in `turn.shown` (it is
        stored even when the turn is cut)."""
        assert self.chat is not None
        parts: list[str] = []
        words = 0
        limit = self.settings.max_answer_words * 1.1
        async for delta in self.chat.stream(prompt, model_name, temperature=expert.temperature):
            if delta.result is not None:
                turn.chat = delta.result
            elif delta.text:
                parts.append(delta.text)
                words += len(delta.text.split())
                if words <= limit:
                    turn.shown.append(delta.text)
                    yield TurnEvent("token", {"text": delta.text})
        turn.model = turn.chat.model if turn.chat else model_name
        turn.text = "".join(parts)

    def _failed(self, turn: _Turn, model_name: str, code: str, exc: BaseException) -> None:
        """No usable answer: the apology, stored as failed with the provider's detail."""
        turn.error, turn.model, turn.text = code, model_name, ERROR_MESSAGES[code]
        turn.status, turn.cause = "failed", getattr(exc, "cause", None) or "provider"
        turn.partial = "".join(turn.shown)
        turn.detail = f"{type(exc).__name__}: {exc}"
        log.error("generation failed for conversation %s: %s", turn.conversation_id, turn.detail)

    def _cut_short(self, turn: _Turn, exc: StreamCut, model_name: str) -> None:
        """A stream that stopped after some text: that text is the stored answer (truncated);
        with nothing shown (a shutdown before the first piece), a failure."""
        shown = "".join(turn.shown)
        if exc.cause == "shutdown" and not shown.strip():
            self._failed(turn, model_name, "shutdown", exc)
            return
        if not shown.strip():
            self._failed(turn, model_name, "model_unavailable", exc)
            return
        turn.model, turn.text, turn.partial = model_name, shown, shown
        turn.error = "shutdown" if exc.cause == "shutdown" else "truncated"
        turn.status, turn.cause = "truncated", exc.cause
        turn.detail = f"{type(exc).__name__}: {exc}"
        log.warning(
            "answer cut short for conversation %s (%s): %s",
            turn.conversation_id,
            exc.cause,
            exc,
        )

    def error_event(self, code: str) -> dict[str, Any]:
        """The stream's `error` event: a code and a French sentence, never the provider's text."""
        return {
            "code": code,
            "message": ERROR_MESSAGES.get(code, APOLOGY),
            "retryable": True,
        }

    def begin_shutdown(self, grace: float) -> None:
        """The process is stopping: running answers get `grace` more seconds, then stop and
        are stored with what was shown (cause `shutdown`); `stopping` refuses new turns."""
        self.stopping = True
        if self.chat is not None:
            self.chat.begin_shutdown(grace)

    @staticmethod
    def _close_timings(turn: _Turn) -> None:
        turn.timings["total"] = round((time.perf_counter() - turn.started) * 1000, 3)
        turn.timings["overhead"] = round(max(turn.timings["total"] - turn.model_ms, 0.0), 3)

    def _validate(self, message: str) -> str:
        if not isinstance(message, str) or not message.strip():
            raise InputError("the message is empty; write a question for Audrey or Carole")
        message = message.strip()
        limit = self.settings.max_message_chars
        if len(message) > limit:
            raise InputError(
                f"the message has {len(message)} characters, over the limit of {limit}; "
                "shorten it or split it in two"
            )
        return message

    async def _route_and_retrieve(self, turn: _Turn) -> None:
        """Decide who answers; when the orchestrator is asked, search the bases meanwhile."""
        deps = self.deps
        t = time.perf_counter()
        assert turn.vector is not None
        local_done: list[float] = []

        async def timed_search(expert: str) -> RetrievalResult:
            s = time.perf_counter()
            out = await deps.retriever.search(expert, turn.message, vector=turn.vector)
            e = time.perf_counter()
            turn.timings[f"retrieval_{expert}"] = round((e - s) * 1000, 3)
            turn.span(f"retrieval_{expert}", s, e)
            return out

        async def speculative(local: Decision) -> dict[str, RetrievalResult]:
            """Both experts' bases searched while the model decides (the two the local
            router finds closest, with more experts)."""
            local_done.append(time.perf_counter())
            ranked = sorted(deps.experts, key=lambda e: local.scores.get(e, 0.0), reverse=True)
            experts = ranked[:SPECULATIVE_SEARCHES]
            found = await asyncio.gather(*(timed_search(e) for e in experts))
            return dict(zip(experts, found, strict=True))

        decision, usage, results = await self.router.route(
            turn.message,
            turn.vector,
            turn.history,
            turn.previous_expert,
            alongside=speculative,
            timings=turn.timings,
        )
        turn.decision = decision
        turn.orchestrator_usage = usage
        if usage is None:  # the local decision stood
            t = turn.mark("route_local", t)
            turn.timings["route"] = turn.timings["route_local"]
            if decision.agent in deps.experts:
                query, vector = self._retrieval_query(turn)
                turn.retrieval = await deps.retriever.search(decision.agent, query, vector=vector)
            turn.mark("retrieval", t)
            return
        started = local_done[0] if local_done else t
        turn.timings["route_local"] = round((started - t) * 1000, 3)
        wall = (time.perf_counter() - started) * 1000
        turn.timings["route"] = round(turn.timings["route_local"] + wall, 3)
        results = results or {}
        searched = [e for e in results if f"retrieval_{e}" in turn.timings]
        if searched:
            turn.timings["retrieval"] = round(
                max(turn.timings[f"retrieval_{e}"] for e in searched), 3
            )
            sequential = turn.timings.get("orchestrator", 0.0) + sum(
                turn.timings[f"retrieval_{e}"] for e in searched
            )
            turn.timings["speculative_saved"] = round(max(sequential - wall, 0.0), 3)
        if "orchestrator" in turn.timings:
            turn.model_ms += turn.timings["orchestrator"]
            orch_start = started
            turn.span("orchestrator", orch_start, orch_start + turn.timings["orchestrator"] / 1000)
        if decision.agent in deps.experts:
            turn.retrieval = results.get(decision.agent)
            if turn.retrieval is None:  # a third expert the local router ranked low
                turn.retrieval = await deps.retriever.search(
                    decision.agent, turn.message, vector=turn.vector
                )

    def _retrieval_query(self, turn: _Turn) -> tuple[str, np.ndarray | None]:
        """A follow-up ("et pour l'étape 2 ?") is searched with the question it follows."""
        decision = turn.decision
        earlier = [m.content for m in turn.history if m.role == "user"]
        if decision is None or not earlier or len(turn.message.split()) > FOLLOW_UP_WORDS:
            return turn.message, turn.vector
        if decision.agent != last_agent(turn.history, None):
            return turn.message, turn.vector
        return f"{earlier[-1]} {turn.message}", None

    async def _earlier_vectors(self, turn: _Turn) -> list[np.ndarray]:
        """The visitor's recent messages, embedded (cached), for loop detection."""
        earlier = [m.content for m in turn.history if m.role == "user"][-LOOP_PREVIOUS:]
        return await self.deps.embedder.embed_many(earlier)

    def _decision_event(self, decision: Decision) -> dict:
        name, color, initials = self.agent_look(decision.agent)
        return {
            "agent": decision.agent,
            "agent_name": name,
            "confidence": round(decision.confidence, 3),
            "router": decision.router,
            "escalated": decision.escalated,
            "color": color,
            "initials": initials,
        }

    def agent_look(self, agent: str) -> tuple[str, str, str]:
        """Name, colour and initials shown for an agent (an expert, the assistant, the team)."""
        expert = self.deps.experts.get(agent)
        if expert is not None:
            return expert.name, expert.color, expert.initials
        if agent == ASSISTANT:
            name = self.deps.settings.assistant_name
            return name, ASSISTANT_COLOR, initials_of(name)
        return TEAM_NAME, TEAM_COLOR, "EQ"

    async def _save(
        self,
        turn: _Turn,
        text: str,
        model: str,
        sources: list[dict],
        analysis: Analysis,
        error: str | None,
    ) -> TurnResult:
        decision = turn.decision
        assert decision is not None
        orch = turn.orchestrator_usage or {}
        prompt_tokens, completion_tokens, cost = turn.usage()
        meta: dict[str, Any] = {
            "primary_need": decision.primary_need,
            "secondary_needs": decision.secondary_needs,
            "reasoning": decision.reasoning,
            "rule": decision.rule,
            "reason": decision.reason or None,
            "scores": decision.scores,
            "evidence": decision.evidence or None,
            "switched_from": decision.switched_from,
            "kept_previous": decision.kept_previous,
            "orchestrator": orch or None,
            "fallback_reason": decision.fallback_reason,
            "sentiment": analysis.sentiment,
            "upsell": analysis.upsell,
            "upsell_reason": analysis.upsell_reason,
            "loop": analysis.loop,
            "loop_similarity": analysis.loop_similarity,
            "fell_back": bool(turn.chat and turn.chat.fell_back),
            "spend": turn.spend.as_dict(),
            "spans": turn.spans,
            "error": turn.detail or error,
            "cause": turn.cause,
            "partial": turn.partial or None,
        }
        answer = Message(
            turn.conversation_id,
            "assistant",
            text,
            status=turn.status if error else "ok",
            agent=decision.agent,
            confidence=decision.confidence,
            router=decision.router,
            sources=sources,
            model=model,
            prompt_tokens=prompt_tokens or None,
            completion_tokens=completion_tokens or None,
            cost_usd=cost,
            timings_ms=dict(turn.timings),
            meta=meta,
        )
        # The write and what follows it run as a task of their own: a visitor who leaves now
        # (her turn cancelled) has read the whole answer, and it is stored once, by this task.
        write = self.background.spawn(self._write_answer(turn, answer), name="store-answer")
        turn.stored = True
        message_id, deleted = await asyncio.shield(write)
        if deleted:
            error = DELETED
        return TurnResult(
            conversation_id=turn.conversation_id,
            message_id=message_id,
            user_message_id=turn.user_message_id,
            response=text,
            agent=decision.agent,
            agent_name=self.agent_look(decision.agent)[0],
            confidence=round(decision.confidence, 3),
            router=decision.router,
            sources=sources,
            escalated=decision.escalated,
            loop_detected=analysis.loop,
            sentiment=analysis.sentiment,
            upsell=analysis.upsell,
            model=model,
            timings_ms={},
            error=error,
            usage={
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "cost_usd": answer.cost_usd,
            },
        )

    async def _after_answer(self, turn: _Turn, message_id: int) -> None:
        """Once the answer is stored: the escalation (its webhook and email), or the
        conversation's expert."""
        deps, decision = self.deps, turn.decision
        assert decision is not None
        if decision.escalated:
            escalation = await self._when_free(
                lambda: record_escalation(
                    deps.store,
                    conversation_id=turn.conversation_id,
                    message_id=message_id,
                    message=turn.message,
                    history=turn.history,
                    decision=decision,
                )
            )
            if self.webhook.url:
                self.background.spawn(
                    self.webhook.send(webhook_payload(escalation)), name="escalation-webhook"
                )
            if self.mailer.enabled and not escalation.merged:
                self.background.spawn(self.mailer.send_handoff(escalation), name="escalation-email")
        elif decision.agent in deps.experts and decision.agent != turn.previous_expert:
            await self._when_free(
                lambda: deps.store.set_conversation_expert(turn.conversation_id, decision.agent)
            )

    async def _write_answer(self, turn: _Turn, answer: Message) -> tuple[int | None, bool]:
        """Store the answer, then the escalation or the conversation's expert: (the answer's
        id, or None when queued or deleted; whether she deleted the conversation meanwhile)."""
        try:
            message_id = await self._store_answer(answer, lambda i: self._after_answer(turn, i))
            if message_id is not None:
                await self._after_answer(turn, message_id)
        except NotFoundError:
            # She deleted the conversation while its answer was written: nothing more is kept.
            return None, True
        return message_id, False

    async def _store_answer(self, answer: Message, then: Any = None) -> int | None:
        """Store the answer, waiting out a locked database (the visitor has read it: it must
        not be lost). Past `save_retry_seconds`, the write is queued in the background and
        retried until it lands (drained at shutdown); the visitor still gets her `done`."""
        try:
            return await self._when_free(lambda: self.deps.store.add_message(answer))
        except StoreBusyError:
            log.error(
                "database still locked after %.0f s: the answer of conversation %s is queued",
                self.settings.save_retry_seconds,
                answer.conversation_id,
            )
            self.background.spawn(self._store_later(answer, then), name="store-answer-later")
            return None

    async def _when_free(self, write: Any, seconds: float | None = None) -> Any:
        """Run `write()` (a coroutine factory), retried while the database is locked, for at
        most `seconds` (default: `save_retry_seconds`); then StoreBusyError."""
        loop = asyncio.get_running_loop()
        end = loop.time() + (self.settings.save_retry_seconds if seconds is None else seconds)
        delay = 0.05
        while True:
            try:
                return await write()
            except StoreBusyError:
                if loop.time() + delay >= end:
                    raise
                log.warning("database locked while saving an answer; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _store_later(self, answer: Message, then: Any = None) -> None:
        """The queued write: tried again until the lock goes (at most an hour), then what
        follows it (`then(message_id)`)."""
        try:
            message_id = await self._when_free(
                lambda: self.deps.store.add_message(answer), seconds=3600
            )
        except NotFoundError:
            log.info("queued answer of conversation %s dropped: deleted", answer.conversation_id)
            return
        log.info("queued answer of conversation %s stored", answer.conversation_id)
        if then is not None:
            await then(message_id)

    async def _save_interrupted(self, turn: _Turn) -> None:
        """A turn stopped from outside: the client left, or the server stopped it past its
        shutdown grace. The text she had read is stored (truncated), with the cause."""
        decision = turn.decision
        shown = "".join(turn.shown)
        cause = "shutdown" if self.stopping else "client_left"
        with contextlib.suppress(NotFoundError):  # deleted meanwhile: nothing to keep
            await self._store_interrupted(turn, decision, shown, cause)

    async def _store_interrupted(
        self, turn: _Turn, decision: Decision | None, shown: str, cause: str
    ) -> None:
        # Like a whole answer, past the short retries it is queued until the lock goes.
        await self._store_answer(
            Message(
                turn.conversation_id,
                "assistant",
                shown,
                status="truncated" if shown.strip() else "failed",
                agent=decision.agent if decision else None,
                router=decision.router if decision else None,
                model=turn.model or None,
                timings_ms=dict(turn.timings),
                meta={
                    "cause": cause,
                    "error": "the server stopped before the answer was complete"
                    if cause == "shutdown"
                    else "the visitor left before the answer was complete",
                },
            )
        )


def _pieces(text: str, size: int = 6) -> list[str]:
    """Split a ready answer into token events of a few words (offline and hand-off answers)."""
    words = text.split(" ")
    return [
        " ".join(words[i : i + size]) + (" " if i + size < len(words) else "")
        for i in range(0, len(words), size)
    ]
