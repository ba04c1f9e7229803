"""What a turn spends on embeddings and rerank, counted by the providers as they are called.

The turn starts a `Spend` (`start()`) before it embeds or searches; calls made in that
context (and in tasks it creates) add their tokens, search units and dollars to it. Calls
outside a turn (ingestion, a CLI search) count nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import asdict, dataclass


@dataclass
class Spend:
    embedding_tokens: int = 0
    embedding_cost_usd: float = 0.0
    rerank_searches: int = 0
    rerank_cost_usd: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in asdict(self).items()}


_current: ContextVar[Spend | None] = ContextVar("copines_spend", default=None)


def start() -> Spend:
    """A new Spend for the calls made from here on in this context."""
    spend = Spend()
    _current.set(spend)
    return spend


def add_embedding(tokens: int, cost_usd: float | None) -> None:
    spend = _current.get()
    if spend is not None:
        spend.embedding_tokens += tokens
        spend.embedding_cost_usd += cost_usd or 0.0


def add_rerank(searches: int, cost_usd: float | None) -> None:
    spend = _current.get()
    if spend is not None:
        spend.rerank_searches += searches
        spend.rerank_cost_usd += cost_usd or 0.0
