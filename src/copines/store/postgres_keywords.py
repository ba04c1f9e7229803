"""Keyword search on the French tsvector (mixed into PostgresStore).

What a keyword search costs is the rows its words match: GIN gathers every posting of every
lexeme a prefix term expands to, and each row ranked is a TOAST read of its tsvector. At 100k
chunks one common word matches 10-20k rows (40 ms p50, 90 ms p95 when every word was searched,
each in both configurations, and 2,000 rows ranked). So, as the SQLite store does with its term
statistics: the words are searched rarest first while the rows they match fit a budget (the
rarest one always), estimated from the planner's own statistics of the column (`pg_stats`, kept
by ANALYZE and autovacuum); the first `_RANKED` of those rows are ranked by every word of the
question, each as a plain and as a French-stemmed prefix.
"""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import dataclass

import numpy as np
from psycopg import sql

from copines.experts import SHARED
from copines.store.base import rarest_within

_TERM = re.compile(r"[a-z0-9]+")
_STATS_TTL = 30.0  # seconds a process trusts its lexeme statistics
ROW_BUDGET = 1000  # rows the searched words may match, estimated (see `LexemeCounts.choose`)
_RANKED = 300  # rows ranked at most


def tsquery_words(terms: list[str]) -> list[str]:
    """The words of the search terms, safe inside a tsquery (letters and digits only)."""
    clean: list[str] = []
    for term in terms:
        for part in _TERM.findall(term.lower()):
            if part not in clean:
                clean.append(part)
    return clean


@dataclass(frozen=True)
class LexemeCounts:
    """Rows per lexeme of the `search` column, as ANALYZE sampled them (its most common ones;
    a lexeme missing from them is rarer than all of those)."""

    lexemes: list[str]  # sorted
    cumulative: np.ndarray  # rows of lexemes[:i], at i
    total: int  # rows in the table

    @classmethod
    def from_stats(cls, lexemes: list[str], freqs: list[float], total: int) -> LexemeCounts:
        # pg_stats appends the minimum, the maximum and the null share to the frequencies.
        pairs = sorted(zip(lexemes, freqs[: len(lexemes)], strict=True))
        rows = np.asarray([f for _, f in pairs], dtype=np.float64) * total
        return cls([lx for lx, _ in pairs], np.concatenate([[0.0], np.cumsum(rows)]), total)

    def prefix_rows(self, prefix: str) -> float:
        """Rows holding a lexeme that starts with `prefix` (an upper bound: a row with two
        such lexemes counts twice)."""
        lo = bisect.bisect_left(self.lexemes, prefix)
        hi = bisect.bisect_left(self.lexemes, prefix + "\U0010ffff")
        return float(self.cumulative[hi] - self.cumulative[lo])

    def choose(self, words: list[str], budget: int) -> list[str]:
        """The words to search: rarest first while their rows fit in `budget` (the rarest one
        always); every word while the whole table fits."""
        if self.total <= budget:
            return words
        return rarest_within([(self.prefix_rows(w), i, w) for i, w in enumerate(words)], budget)


NO_STATS = LexemeCounts([], np.zeros(1), 0)


class KeywordSearchMixin:
    """`keyword_search` and the lexeme statistics it budgets with; `self._conn()` and
    `self._search()` come from PostgresStore."""

    _lexeme_counts: LexemeCounts = NO_STATS
    _lexeme_counts_at: float = float("-inf")

    async def lexeme_counts(self) -> LexemeCounts:
        """The column's lexeme statistics, re-read at most every 30 s."""
        if time.monotonic() - self._lexeme_counts_at > _STATS_TTL:
            async with self._conn() as conn:
                row = await (
                    await conn.execute(
                        "SELECT s.most_common_elems::text::text[] AS lexemes, "
                        "s.most_common_elem_freqs AS freqs, "
                        "(SELECT count(*) FROM copines.document_chunks) AS total "
                        "FROM pg_stats s WHERE s.schemaname = 'copines' "
                        "AND s.tablename = 'document_chunks' AND s.attname = 'search'"
                    )
                ).fetchone()
            if row is None or row["lexemes"] is None:  # not analyzed yet: search every word
                self._lexeme_counts = NO_STATS
            else:
                self._lexeme_counts = LexemeCounts.from_stats(
                    row["lexemes"], row["freqs"], int(row["total"])
                )
            self._lexeme_counts_at = time.monotonic()
        return self._lexeme_counts

    async def keyword_search(self, expert: str, terms: list[str], limit: int) -> list[int]:
        words = tsquery_words(terms)
        if not words:
            return []
        chosen = (await self.lexeme_counts()).choose(words, ROW_BUDGET)

        def prefixes(words: list[str], configs: tuple[str, ...]) -> sql.Composable:
            return sql.SQL(" || ").join(
                sql.SQL("to_tsquery({c}, {w})").format(c=sql.Literal(c), w=sql.Literal(f"{w}:*"))
                for w in words
                for c in configs
            )

        # Found by plain prefixes (one GIN range per word, where the French stem doubled it):
        # a chunk that only says "attendre" is no longer found for "attendais", but a found one
        # that also says it ranks higher, since the ranking takes both forms (the labelled
        # questions lost nothing). The owner is checked on the rows found (`|| ''` keeps its
        # index out: a bitmap of all the expert's and the shared rows cost 3 ms at 100k
        # chunks, more than the rows it spared).
        query = sql.SQL(
            "WITH q AS (SELECT {found} AS found, {ranked} AS ranked) "
            "SELECT c.id FROM (SELECT k.id, k.search FROM copines.document_chunks k, q "
            "WHERE k.search @@ q.found AND k.agent_owner || '' IN (%(expert)s, %(shared)s) "
            "LIMIT %(ranked)s) c, q "
            "ORDER BY ts_rank(c.search, q.ranked) DESC, c.id LIMIT %(limit)s"
        ).format(found=prefixes(chosen, ("simple",)), ranked=prefixes(words, ("simple", "french")))
        params = {"expert": expert, "shared": SHARED, "limit": limit, "ranked": _RANKED}
        rows = await self._search({"jit": "off"}, query, params)
        return [r["id"] for r in rows]
