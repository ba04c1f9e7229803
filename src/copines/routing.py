"""The cascade router: a local semantic router first, the LLM orchestrator when it is unsure.

The local router compares the message's embedding with each expert's exemplars and profile
(her description and expertise) and with the agency's out-of-scope examples, adds lexical cues
learnt from the expert files, reads follow-ups with the previous turns, and decides alone when
its margin is clear. Otherwise the orchestrator (a fast model, strict JSON) decides; anything
wrong with its answer falls back to the local decision.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from copines.experts import ESCALATE, Expert
from copines.orchestrator import (
    CONFIDENCE_FLOOR,
    OrchestratorAnswer,
    orchestrator_messages,
    orchestrator_prompt,
    parse_orchestrator,
)
from copines.providers.chat import ChatClient
from copines.providers.embeddings import Embedder, normalise
from copines.routing_data import (
    DEFERRAL,
    ESCALATE_EXEMPLARS,
    ESCALATE_PATTERNS,
    FOLLOWUP_PATTERNS,
    SMALL_TALK_MARKERS,
    SMALL_TALK_WORDS,
    URGENCY,
    WEAK_ESCALATE_PATTERNS,
)
from copines.store.base import Message
from copines.text import STOPWORDS, fold, keywords, stem, words

log = logging.getLogger("copines.routing")

__all__ = [
    "CONFIDENCE_FLOOR",
    "Decision",
    "LocalRouter",
    "OrchestratorAnswer",
    "Router",
    "finish",
    "orchestrator_messages",
    "orchestrator_prompt",
    "parse_orchestrator",
]


# Exemplar embeddings, shared by the routers of one process (same embedder, same experts).
_PROFILE_CACHE: dict[tuple, dict] = {}


@dataclass
class Decision:
    """Who answers, and why."""

    agent: str  # an expert id or "escalate"
    confidence: float
    primary_need: str = ""
    secondary_needs: list[str] = field(default_factory=list)
    reasoning: str = ""
    router: str = "local"  # local | llm
    scores: dict[str, float] = field(default_factory=dict)
    margin: float = 0.0
    clear: bool = False  # the local router may decide alone
    sentiment_hint: str | None = None
    upsell_hint: bool | None = None
    switched_from: str | None = None
    kept_previous: bool = False
    fallback_reason: str | None = None  # why the orchestrator's answer was not used
    rule: str = ""  # which local rule decided (escalate-pattern, follow-up, semantic...)
    reason: str = ""  # why it escalates: emergency, medical, legal, payment, injection, ...

    @property
    def escalated(self) -> bool:
        return self.agent == ESCALATE

    def public(self) -> dict:
        """The fields of the `copines route` contract."""
        return {
            "agent": self.agent,
            "confidence": round(self.confidence, 3),
            "primary_need": self.primary_need,
            "secondary_needs": self.secondary_needs,
            "reasoning": self.reasoning,
            "router": self.router,
        }

    def as_dict(self) -> dict:
        return asdict(self)


# Local router -------------------------------------------------------------------------
@dataclass
class _Profile:
    exemplars: np.ndarray  # (n, dim)
    about: np.ndarray  # (dim,)
    cues: frozenset[str]  # stems that point to this expert only


def _stems(text: str) -> set[str]:
    return {stem(w) for w in keywords(text)}


def learn_cues(experts: dict[str, Expert]) -> dict[str, frozenset[str]]:
    """Stems that appear on one expert's side only (her patterns, tags, exemplars, expertise)."""
    counts: dict[str, dict[str, int]] = {}
    for expert in experts.values():
        c: dict[str, int] = {}
        texts = [*expert.exemplars, *expert.expertise, expert.description]
        for text in texts:
            for s in _stems(text):
                c[s] = c.get(s, 0) + 1
        for term in [*expert.filename_patterns, *expert.tags]:
            for s in _stems(term.replace("-", " ").replace("_", " ")):
                c[s] = c.get(s, 0) + 3
        counts[expert.id] = c
    cues: dict[str, frozenset[str]] = {}
    for eid, c in counts.items():
        others = [counts[o] for o in counts if o != eid]
        mine = set()
        for s, n in c.items():
            rival = max((o.get(s, 0) for o in others), default=0)
            if n >= 2 and n >= 4 * max(rival, 0.5) and len(s) > 2:
                mine.add(s)
        cues[eid] = frozenset(mine)
    return cues


class LocalRouter:
    """The embedding router: decides alone when clearly confident, and offline always.

    Args:
        margin: the lead (in blended score) the best expert needs over the runner-up to be clear.
        floor: under this best expert similarity, a message is about something else (escalate).
    """

    def __init__(
        self,
        experts: dict[str, Expert],
        embedder: Embedder,
        *,
        margin: float = 0.06,
        floor: float = 0.3,
        cue_weight: float = 0.04,
        top_n: int = 3,
        fifty_fifty: float = 0.1,
        switch_margin: float = 0.1,
        topic_floor: float = 0.45,
    ):
        self.experts = experts
        self.embedder = embedder
        self.margin = margin
        self.floor = floor
        self.cue_weight = cue_weight
        self.top_n = top_n
        self.fifty_fifty = fifty_fifty
        self.switch_margin = switch_margin
        self.topic_floor = topic_floor  # a message this close to an expert is about her topic
        self._profiles: dict[str, _Profile] | None = None
        self._names = frozenset(fold(e.name) for e in experts.values())
        self._lock = asyncio.Lock()

    async def prepare(self) -> None:
        """Embed every exemplar once (about a second for the bundled experts)."""
        if self._profiles is not None:
            return
        async with self._lock:
            if self._profiles is not None:
                return
            key = (
                id(self.embedder),
                self.embedder.id,
                tuple(
                    (e.id, e.description, tuple(e.expertise), tuple(e.exemplars))
                    for e in self.experts.values()
                ),
                tuple(ESCALATE_EXEMPLARS),
            )
            cached = _PROFILE_CACHE.get(key)
            if cached is not None:
                self._profiles = cached
                return
            cues = learn_cues(self.experts)
            profiles: dict[str, _Profile] = {}
            for expert in self.experts.values():
                about = expert.description + " " + " ; ".join(expert.expertise)
                vectors = await self.embedder.embed([about, *expert.exemplars])
                profiles[expert.id] = _Profile(vectors[1:], vectors[0], cues[expert.id])
            vectors = await self.embedder.embed(ESCALATE_EXEMPLARS)
            profiles[ESCALATE] = _Profile(
                vectors, normalise(vectors.mean(0, keepdims=True))[0], frozenset()
            )
            _PROFILE_CACHE[key] = self._profiles = profiles

    def _similarity(self, profile: _Profile, vector: np.ndarray) -> float:
        sims = profile.exemplars @ vector
        n = min(self.top_n, len(sims))
        top = np.partition(sims, -n)[-n:]
        return float(0.8 * top.mean() + 0.2 * (profile.about @ vector))

    def _scores(self, vector: np.ndarray, text: str) -> tuple[dict[str, float], dict[str, int]]:
        assert self._profiles is not None
        stems = _stems(text)
        scores: dict[str, float] = {}
        hits: dict[str, int] = {}
        for eid, profile in self._profiles.items():
            scores[eid] = self._similarity(profile, vector)
            if eid != ESCALATE:
                hits[eid] = len(stems & profile.cues)
                scores[eid] += self.cue_weight * min(hits[eid], 3)
        return scores, hits

    async def decide(
        self,
        message: str,
        vector: np.ndarray,
        history: list[Message],
        previous_expert: str | None,
    ) -> Decision:
        """The local decision, with `clear` set when it may stand without the orchestrator."""
        await self.prepare()
        folded = fold(message)
        scores, hits = self._scores(vector, message)

        # 1. Explicit out-of-scope or "a human please": the agency's rule, no model needed.
        on_topic = max(v for k, v in scores.items() if k != ESCALATE) >= self.topic_floor
        weak = [] if on_topic else WEAK_ESCALATE_PATTERNS
        for pattern, need in [*ESCALATE_PATTERNS, *weak]:
            if pattern.search(folded):
                return Decision(
                    ESCALATE,
                    0.95,
                    primary_need=need,
                    reasoning=f"hors du champ des expertes ({need}) : l'équipe prend le relais",
                    scores=_round(scores),
                    clear=True,
                    rule="escalate-pattern",
                )

        # 2. Thanks and greetings: the conversation's expert (or Carole, the entry point) replies.
        if is_small_talk(message, self._names):
            prev = _last_expert(history, previous_expert)
            agent = prev if prev in self.experts else min(self.experts, key=_entry_first)
            return Decision(
                agent,
                0.9,
                primary_need="remerciement ou salutation",
                reasoning="message de politesse : la conversation continue avec la même experte",
                scores=_round(scores),
                clear=True,
                rule="small-talk",
            )

        # 3. Mixed topics: drop what the visitor says can wait, keep what is urgent.
        deferred = bool(DEFERRAL.search(folded))
        focus = _urgent_part(message) if deferred or URGENCY.search(folded) else None
        if focus and focus != message:
            fvec = await self.embedder.embed_one(focus)
            scores, hits = self._scores(fvec, focus)

        expert_scores = {k: v for k, v in scores.items() if k != ESCALATE}
        ranked = sorted(expert_scores.items(), key=lambda kv: kv[1], reverse=True)
        best, best_score = ranked[0]
        runner, runner_score = ranked[1] if len(ranked) > 1 else ("", -1.0)
        margin = best_score - runner_score
        rule = "semantic"

        # 4. Follow-ups ("et pour l'étape 2 ?"): the message has no topic of its own.
        prev = _last_expert(history, previous_expert)
        short = len(message.split()) <= 12
        unrelated = scores[ESCALATE] > best_score + 0.1  # closer to what the team handles
        followup = prev and (
            _is_followup(folded, hits, unrelated)
            or (short and best_score < self.floor and not unrelated)
        )
        if followup and not (focus and focus != message):
            context = [m.content for m in history if m.role == "user"][-2:]
            cvec = await self._context_vector(vector, context)
            c_scores, _ = self._scores(cvec, " ".join([*context, message]))
            c_scores = {k: v for k, v in c_scores.items() if k != ESCALATE}
            if prev in c_scores:
                c_scores[prev] += 0.05  # the conversation's expert goes on unless clearly not hers
            ranked = sorted(c_scores.items(), key=lambda kv: kv[1], reverse=True)
            best, best_score = ranked[0]
            margin = best_score - (ranked[1][1] if len(ranked) > 1 else -1.0)
            rule = "follow-up"
            return Decision(
                best,
                _confidence(max(margin, self.margin)),
                primary_need=_need(" ".join(context[-1:] + [message])),
                reasoning=f"suite de la conversation avec {self.experts[best].name}",
                scores=_round(c_scores),
                margin=round(margin, 4),
                clear=True,
                rule=rule,
            )

        # 5. Nothing close to either expert, and close to what the agency hands off: escalate.
        off_topic = best_score < self.floor and not any(hits.values())
        if off_topic or (scores[ESCALATE] > best_score + 0.05 and not any(hits.values())):
            return Decision(
                ESCALATE,
                0.8 if off_topic else 0.75,
                primary_need=_need(message),
                reasoning="demande hors du champ des expertes",
                scores=_round(scores),
                margin=round(scores[ESCALATE] - best_score, 4),
                clear=off_topic and best_score < self.floor - 0.05,
                rule="off-topic",
            )

        # 6. Both topics named and no urgency to choose by: a true 50/50 goes to Carole
        # (the creative entry point), by the agency's rule; the orchestrator may still weigh it.
        both = len(hits) > 1 and all(hits.values()) and focus is None
        if both and "carole" in expert_scores and margin < self.fifty_fifty:
            best, rule = "carole", "fifty-fifty"

        # 7. The conversation's expert stays unless the message clearly belongs to another.
        kept = False
        if previous_expert in expert_scores and best != previous_expert:
            lead = expert_scores[best] - expert_scores[previous_expert]
            named = hits.get(best, 0) > 0 and not hits.get(previous_expert, 0)
            if lead < self.switch_margin and not (named and lead >= self.margin / 2):
                best, kept, rule = previous_expert, True, "kept-previous"

        secondary = [
            self.experts[e].name for e, n in hits.items() if n and e != best and e in self.experts
        ]
        return Decision(
            best,
            _confidence(margin),
            primary_need=_need(focus or message),
            secondary_needs=secondary,
            reasoning=_reason(self.experts[best], rule),
            scores=_round(scores),
            margin=round(margin, 4),
            clear=not both
            and (
                margin >= self.margin
                or (
                    hits.get(best, 0) >= 2 and not hits.get(runner, 0) and margin >= self.margin / 2
                )
            ),
            kept_previous=kept,
            rule=rule,
        )

    async def _context_vector(self, vector: np.ndarray, context: list[str]) -> np.ndarray:
        if not context:
            return vector
        vecs = await self.embedder.embed_many(context)
        blend = 0.6 * vector + sum(
            w * v for w, v in zip((0.6, 1.0)[-len(vecs) :], vecs, strict=True)
        )
        return normalise(np.asarray(blend, dtype=np.float32)[None, :])[0]


def is_small_talk(message: str, names: frozenset[str] = frozenset()) -> bool:
    """Thanks, greetings, "à demain": polite words only, at least one of them a marker.

    `names`: the experts' folded first names ("Merci Carole !").
    """
    tokens = words(message)
    if not tokens or len(tokens) > 14 or "?" in message:
        return False
    if not any(t in SMALL_TALK_MARKERS for t in tokens):
        return False
    return all(t in SMALL_TALK_WORDS or t in STOPWORDS or t in names or len(t) <= 2 for t in tokens)


def _entry_first(expert_id: str) -> tuple[int, str]:
    """Carole is the agency's entry point (creation); then the others by id."""
    return (0 if expert_id == "carole" else 1, expert_id)


def _round(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in scores.items()}


def _confidence(margin: float) -> float:
    """Map the local margin to a confidence: a clear margin reads as >= 0.8."""
    return round(float(min(0.97, 0.7 + 2.5 * max(margin, 0.0))), 3)


def _need(message: str) -> str:
    words = keywords(message, limit=6)
    return " ".join(words) if words else message[:60]


def _reason(expert: Expert, rule: str) -> str:
    if rule == "kept-previous":
        return f"{expert.name} continue : le message ne relève pas clairement d'une autre experte"
    if rule == "fifty-fifty":
        return "sujet partagé à égalité : Carole, point d'entrée création"
    return f"le besoin principal relève de {expert.name} ({expert.title})"


def _is_followup(folded: str, hits: dict[str, int], unrelated: bool) -> bool:
    """A message that leans on the previous turns: a follow-up phrase, or almost no topic."""
    if any(hits.values()):
        return False
    if FOLLOWUP_PATTERNS.search(folded):
        return True
    topical = [w for w in keywords(folded) if len(w) > 3]
    return len(topical) <= 3 and not unrelated


def _last_expert(history: list[Message], previous: str | None) -> str | None:
    for message in reversed(history):
        if message.role == "assistant" and message.agent and message.agent != ESCALATE:
            return message.agent
    return previous if previous != ESCALATE else None


_CLAUSES = re.compile(r"(?<=[.!?;:])\s+|,?\s+(?=par contre\b)|,\s+(?=mais\b)")


def _urgent_part(message: str) -> str | None:
    """The clauses of a mixed message that are not put off ("ça peut attendre")."""
    clauses: list[str] = []
    for part in _CLAUSES.split(message):
        if not part or not part.strip():
            continue
        if clauses and len(clauses[-1].split()) < 4:  # "Plus urgent :" leads the next clause
            clauses[-1] = f"{clauses[-1]} {part}"
        else:
            clauses.append(part)
    if len(clauses) < 2:
        return None
    picked: list[int] = []
    for i, clause in enumerate(clauses):
        if URGENCY.search(fold(clause)) and not DEFERRAL.search(fold(clause)):
            # "il y a plus pressé : <the urgent thing>"
            lead = clause.rstrip().endswith(":") and i + 1 < len(clauses)
            j = i + 1 if lead else i
            if j not in picked:
                picked.append(j)
    urgent = [clauses[j] for j in sorted(picked)]
    kept = urgent or [c for c in clauses if not DEFERRAL.search(fold(c))]
    if not kept or len(kept) == len(clauses):
        return None
    return " ".join(kept)


# The cascade ----------------------------------------------------------------------------
class Router:
    """The cascade: local first; the orchestrator when the local router is unsure."""

    def __init__(
        self,
        experts: dict[str, Expert],
        local: LocalRouter,
        chat: ChatClient | None,
        *,
        orchestrator_model: str = "",
        timeout: float = 4.0,
    ):
        self.experts = experts
        self.local = local
        self.chat = chat
        self.orchestrator_model = orchestrator_model
        self.timeout = timeout

    @property
    def llm_enabled(self) -> bool:
        return self.chat is not None and bool(self.orchestrator_model)

    async def ask_orchestrator(
        self, message: str, history: list[Message], local: Decision
    ) -> tuple[Decision, dict]:
        """The orchestrator's decision, or the local one when it fails (never raises).

        Returns the decision and the call's usage ({model, prompt_tokens, ..., error}).
        """
        assert self.chat is not None
        usage: dict = {"model": self.orchestrator_model}
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
        agent = answer.agent
        if agent != ESCALATE and answer.confidence < CONFIDENCE_FLOOR:
            agent = ESCALATE
        decision = Decision(
            agent,
            answer.confidence,
            primary_need=answer.primary_need,
            secondary_needs=list(answer.secondary_needs),
            reasoning=answer.reasoning
            + ("" if agent == answer.agent else " (confiance sous 0.7 : l'équipe prend le relais)"),
            router="llm",
            scores=local.scores,
            margin=local.margin,
            sentiment_hint=answer.sentiment,
            upsell_hint=answer.upsell,
            rule="orchestrator",
        )
        return decision, usage

    @staticmethod
    def _fallback(local: Decision, reason: str) -> Decision:
        local.fallback_reason = reason
        local.router = "local"
        return local

    def needs_orchestrator(self, local: Decision) -> bool:
        return self.llm_enabled and not local.clear

    async def route(
        self,
        message: str,
        vector: np.ndarray,
        history: list[Message],
        previous_expert: str | None = None,
    ) -> tuple[Decision, dict | None]:
        """Decide who answers (local, then the orchestrator when needed)."""
        local = await self.local.decide(message, vector, history, previous_expert)
        if not self.needs_orchestrator(local):
            return finish(local, previous_expert), None
        decision, usage = await self.ask_orchestrator(message, history, local)
        return finish(decision, previous_expert), usage


def finish(decision: Decision, previous_expert: str | None) -> Decision:
    """Record a switch of expert (the decision itself is final)."""
    if previous_expert and decision.agent not in (ESCALATE, previous_expert):
        decision.switched_from = previous_expert
    return decision
