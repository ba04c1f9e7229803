"""The local router: safety rules, then the learnt classifier, with calibrated confidence.

It reads the message's embedding, the recent history (the visitor's last messages and who
answered last), and the knowledge bases: the best dense matches of each expert's base are
searched for the message, and how well her documents match, relative to the other experts',
is evidence for her.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from copines.experts import ESCALATE, SHARED, Expert
from copines.providers.embeddings import Embedder, normalise
from copines.routing import rules
from copines.routing.classifier import LEXICAL_PATH, MODEL_PATH, Model
from copines.routing.decision import ASSISTANT, Decision
from copines.routing.features import Inputs, expert_features, shared_features
from copines.store.base import Message, Store
from copines.text import keywords

log = logging.getLogger("copines.routing")

CONTEXT_MESSAGES = 2  # the visitor's earlier messages read with a follow-up
EVIDENCE_K = 3  # passages per base read as evidence
SHARED_SCAN = 12  # more matches read, so that EVIDENCE_K of her own remain past the shared ones

# Embedded exemplars and profiles, shared by the routers of one process.
_PROFILES: dict[tuple, dict[str, tuple[np.ndarray, np.ndarray]]] = {}


def load_model(embedder: Embedder) -> Model:
    """The shipped model for this embedder: the full one when it was trained with it, else
    the one without embedding features, its similarity spreads rescaled to the embedder."""
    model = Model.load(MODEL_PATH)
    if model.embedder_id == embedder.id:
        return model
    lexical = Model.load(LEXICAL_PATH)
    ratio = (1.0 - embedder.default_threshold) / max(1.0 - lexical.threshold, 1e-6)
    scale = {k: v * ratio for k, v in lexical.scale.items() if k != "floor"}
    if "floor" in lexical.scale:  # a multiple of the match threshold
        factor = lexical.scale["floor"] / max(lexical.threshold, 1e-6)
        scale["floor"] = factor * embedder.default_threshold
    lexical.scale = scale
    return lexical


class LocalRouter:
    """Safety rules, then the classifier. `store`: the knowledge bases (None: no evidence)."""

    def __init__(
        self,
        experts: dict[str, Expert],
        embedder: Embedder,
        store: Store | None = None,
        *,
        model: Model | None = None,
        use_evidence: bool | None = None,
    ):
        self.experts = experts
        self.embedder = embedder
        self.store = store
        self._model = model
        self._use_evidence = use_evidence
        self._profiles: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._lock = asyncio.Lock()

    @property
    def model(self) -> Model:
        """The shipped model, read on first use (training builds a router without one)."""
        if self._model is None:
            self._model = load_model(self.embedder)
        return self._model

    @property
    def use_evidence(self) -> bool:
        if self._use_evidence is None:
            return self.model.use_evidence
        return self._use_evidence

    @property
    def alone(self) -> float:
        return self.model.alone

    async def prepare(self) -> None:
        """Embed the experts' exemplars and profiles once."""
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
            )
            cached = _PROFILES.get(key)
            if cached is None:
                cached = {}
                for expert in self.experts.values():
                    about = expert.description + " " + " ; ".join(expert.expertise)
                    vectors = await self.embedder.embed([about, *expert.exemplars])
                    cached[expert.id] = (vectors[0], vectors[1:])
                _PROFILES[key] = cached
            self._profiles = cached

    async def inputs(
        self, message: str, vector: np.ndarray, history: list[Message], previous: str | None
    ) -> Inputs:
        """Everything the classifier reads about one message."""
        await self.prepare()
        assert self._profiles is not None
        earlier = [m.content for m in history if m.role == "user"][-CONTEXT_MESSAGES:]
        context = None
        if earlier:
            vectors = await self.embedder.embed_many(earlier)
            context = normalise(np.mean(vectors, axis=0, keepdims=True))[0]
        exemplars, profile = {}, {}
        for eid, (about, examples) in self._profiles.items():
            sims = examples @ vector
            n = min(3, len(sims))
            exemplars[eid] = float(np.partition(sims, -n)[-n:].mean())
            profile[eid] = float(about @ vector)
        evidence, knowledge = await self.evidence(vector) if self.use_evidence else ({}, 0.0)
        return Inputs(
            message,
            vector,
            context,
            last_agent(history, previous),
            exemplars,
            profile,
            evidence,
            knowledge,
        )

    async def evidence(self, vector: np.ndarray) -> tuple[dict[str, tuple[float, float]], float]:
        """Each expert's best dense matches in her own documents, and the best match of any
        base (shared documents included).

        A shared document matches every expert alike: counted in each expert's evidence, it
        hides how her own documents match (the best match of both is the same shared chunk).
        The store searches an expert's documents with the shared ones, so the shared chunks
        are found on their own and left out.
        """
        if self.store is None:
            return {}, 0.0
        wide = EVIDENCE_K + SHARED_SCAN
        shared = await self.store.dense_search(SHARED, vector, wide, -1.0)
        shared_ids = {c for c, _ in shared}
        best = max((s for _, s in shared), default=0.0)
        out = {}
        for eid in self.experts:
            found = await self.store.dense_search(eid, vector, wide, -1.0)
            best = max([best, *(s for _, s in found)])
            scores = [s for c, s in found if c not in shared_ids][:EVIDENCE_K]
            out[eid] = (max(scores), float(np.mean(scores))) if scores else (0.0, 0.0)
        return out, float(best)

    def probabilities(self, inputs: Inputs) -> tuple[dict[str, float], dict[str, float]]:
        experts = list(self.experts)
        floor = self.model.scale.get("floor", 0.0) if self.use_evidence else None
        x = shared_features(inputs, self.model.layout, floor)
        g = expert_features(inputs, experts, self.model.scale, self.use_evidence)
        return self.model.probabilities(x, g, experts)

    async def decide(
        self,
        message: str,
        vector: np.ndarray,
        history: list[Message],
        previous_expert: str | None = None,
    ) -> Decision:
        """The local decision; `clear` when it may stand without the orchestrator."""
        rule = rules.check(message)
        if rule is not None:
            return Decision(
                ESCALATE,
                0.99,
                primary_need=rule.need,
                reasoning=f"règle de sécurité ({rule.reason}) : l'équipe prend le relais",
                clear=True,
                rule="safety",
                reason=rule.reason,
            )
        inputs = await self.inputs(message, vector, history, previous_expert)
        probs, reasons = self.probabilities(inputs)
        ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)
        (agent, confidence), runner = ranked[0], ranked[1][1]
        decision = Decision(
            agent,
            confidence,
            primary_need=need_of(message),
            reasoning=self._reasoning(agent),
            scores={k: round(v, 4) for k, v in probs.items()},
            margin=round(confidence - runner, 4),
            clear=confidence >= self.alone,
            rule="classifier",
            evidence={k: round(v[0], 4) for k, v in inputs.evidence.items()},
        )
        if agent == ESCALATE:
            decision.reason = max(reasons, key=reasons.get) if reasons else "out_of_scope"
        if agent == ASSISTANT:
            decision.primary_need = "politesse ou question sur l'assistante"
        return decision

    def _reasoning(self, agent: str) -> str:
        if agent == ESCALATE:
            return "hors du champ des expertes : l'équipe prend le relais"
        if agent == ASSISTANT:
            return "message de politesse : l'assistante répond et invite la question"
        expert = self.experts[agent]
        return f"le besoin principal relève de {expert.name} ({expert.title})"


def last_agent(history: list[Message], previous: str | None) -> str | None:
    """Who answered the visitor last (an expert, escalate or assistant), else `previous`."""
    for message in reversed(history):
        if message.role == "assistant" and message.agent:
            return message.agent
        if message.role == "team":
            return ESCALATE
    return previous


def need_of(message: str) -> str:
    words = keywords(message, limit=6)
    return " ".join(words) if words else message[:60]
