"""Knowledge gaps: the questions an expert could not answer well, grouped by similarity."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from copines.admin.turns import Turn
from copines.errors import CopinesError
from copines.knowledge.retrieval import Retriever
from copines.providers.embeddings import Embedder

# A best passage under this score means the knowledge base had little to say (the local
# reranker's scale: dense cosine plus small lexical bonuses; Cohere's is 0..1 too).
LOW_SCORE = 0.45
# Two questions about the same missing topic embed at least this close (USE and OpenAI alike).
SAME_TOPIC = 0.55
MAX_QUESTIONS = 500
MAX_READ_TIME_SEARCHES = 100
# Hand-offs the router made on purpose, by a rule (a human asked for, payment, legal...): no
# gap. "escalate-pattern" is the name stored turns of the earlier router carry.
ON_PURPOSE = {"safety", "escalate-pattern"}


@dataclass
class GapQuestion:
    question: str
    conversation_id: str
    message_id: int | None
    best_score: float | None
    thumbs_down: bool
    escalated: bool
    searched_now: bool = False
    closest_document: str | None = None  # the best source the answer had


@dataclass
class GapGroup:
    """Questions about one missing topic; `label` is the most central one."""

    expert: str
    label: str
    questions: list[GapQuestion] = field(default_factory=list)

    @property
    def closest_documents(self) -> list[tuple[str, int]]:
        """The documents the answers leaned on, most often first: extend one, or write anew."""
        counts = Counter(q.closest_document for q in self.questions if q.closest_document)
        return counts.most_common(3)

    @property
    def worst_score(self) -> float | None:
        scores = [q.best_score for q in self.questions if q.best_score is not None]
        return min(scores) if scores else None


async def score_escalations(
    turns: list[Turn], retriever: Retriever, limit: int = MAX_READ_TIME_SEARCHES
) -> None:
    """Give hand-offs (which keep no retrieval) the best score of their closest expert's base,
    searched now, most recent first."""
    missing = [
        t
        for t in turns
        if t.escalated and t.expert and t.best_score is None and t.rule not in ON_PURPOSE
    ]
    for turn in reversed(missing[-limit:]):
        if not turn.question_text.strip():
            continue
        try:
            result = await retriever.search(turn.expert, turn.question_text[:2000])
        except CopinesError:
            continue
        turn.best_score = result.best_score
        turn.score_at_read_time = True


def _top_source(turn: Turn) -> str | None:
    sources = [s for s in turn.message.sources if isinstance(s, dict) and s.get("filename")]
    if not sources:
        return None
    return str(max(sources, key=lambda s: float(s.get("score") or 0.0))["filename"])


def gap_questions(turns: list[Turn], low_score: float = LOW_SCORE) -> dict[str, list[GapQuestion]]:
    """Per expert, the questions whose best passage scored under `low_score` or got a thumb down."""
    out: dict[str, list[GapQuestion]] = {}
    for turn in turns:
        if not turn.expert or not turn.question_text.strip():
            continue
        if turn.escalated and turn.rule in ON_PURPOSE:
            continue
        low = turn.best_score is not None and turn.best_score < low_score
        down = turn.feedback == -1
        if low or down:
            out.setdefault(turn.expert, []).append(
                GapQuestion(
                    question=turn.question_text.strip(),
                    conversation_id=turn.conversation_id,
                    message_id=turn.message.id,
                    best_score=turn.best_score,
                    thumbs_down=down,
                    escalated=turn.escalated,
                    searched_now=turn.score_at_read_time,
                    closest_document=_top_source(turn),
                )
            )
    return out


def cluster(vectors: np.ndarray, threshold: float = SAME_TOPIC) -> list[list[int]]:
    """Average-linkage agglomerative clustering on cosine similarity; returns index groups."""
    n = len(vectors)
    if n == 0:
        return []
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    sim = unit @ unit.T
    groups: list[list[int]] = [[i] for i in range(n)]
    # link[a][b]: sum of similarities between members of groups a and b.
    link = sim.astype(np.float64).copy()
    sizes = np.ones(n)
    alive = np.ones(n, dtype=bool)
    np.fill_diagonal(link, -np.inf)
    while alive.sum() > 1:
        avg = link / np.outer(sizes, sizes)
        avg[~alive, :] = -np.inf
        avg[:, ~alive] = -np.inf
        np.fill_diagonal(avg, -np.inf)
        a, b = np.unravel_index(int(np.argmax(avg)), avg.shape)
        if avg[a, b] < threshold:
            break
        link[a, :] += link[b, :]
        link[:, a] += link[:, b]
        link[a, a] = -np.inf
        sizes[a] += sizes[b]
        alive[b] = False
        groups[a].extend(groups[b])
        groups[b] = []
    return [sorted(g) for g, keep in zip(groups, alive, strict=True) if keep]


async def knowledge_gaps(
    turns: list[Turn],
    embedder: Embedder,
    *,
    low_score: float = LOW_SCORE,
    same_topic: float = SAME_TOPIC,
) -> dict[str, list[GapGroup]]:
    """Per expert, the gap questions grouped by topic, biggest group first."""
    result: dict[str, list[GapGroup]] = {}
    for expert, questions in gap_questions(turns, low_score).items():
        questions = questions[-MAX_QUESTIONS:]
        vectors = np.asarray(await embedder.embed([q.question for q in questions]))
        groups = []
        for members in cluster(vectors, same_topic):
            centre = vectors[members].mean(axis=0)
            central = max(members, key=lambda i: float(vectors[i] @ centre))
            groups.append(
                GapGroup(expert, questions[central].question, [questions[i] for i in members])
            )
        groups.sort(key=lambda g: (-len(g.questions), g.worst_score or 0.0))
        result[expert] = groups
    return result
