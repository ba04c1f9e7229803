"""Exact vector search in memory: one float32 matrix per owner, scanned with numpy."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

_controller = None


def single_blas_thread():
    """A context in which numpy's BLAS uses one thread.

    A matrix-vector product over 100k rows is memory-bound: a second BLAS thread saves
    little, and when the cores are busy (the event loop, the embedder, other workers) its
    spinning threads made the same search several times slower.
    """
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # threadpoolctl missing or confused: run as is
            _controller = False
    if _controller is False:
        return contextlib.nullcontext()
    return _controller.limit(limits=1, user_api="blas")


@dataclass
class OwnerBlock:
    ids: np.ndarray  # (n,) int64 chunk ids
    matrix: np.ndarray  # (n, dim) float32, rows L2-normalised


class VectorIndex:
    """The vectors of one store snapshot, grouped by document owner.

    Searching an expert scans only her block and the shared block, so another
    expert's chunks are never even scored.
    """

    def __init__(self, version: str, dim: int, blocks: dict[str, OwnerBlock]):
        self.version = version
        self.dim = dim
        self.blocks = blocks
        self._row: dict[int, tuple[str, int]] = {}
        for owner, block in blocks.items():
            for i, chunk_id in enumerate(block.ids.tolist()):
                self._row[chunk_id] = (owner, i)

    @classmethod
    def build(
        cls, version: str, dim: int, ids: list[int], owners: list[str], blobs: list[bytes]
    ) -> VectorIndex:
        by_owner: dict[str, list[int]] = {}
        for i, owner in enumerate(owners):
            by_owner.setdefault(owner, []).append(i)
        blocks = {}
        for owner, rows in by_owner.items():
            matrix = np.frombuffer(b"".join(blobs[i] for i in rows), dtype=np.float32)
            blocks[owner] = OwnerBlock(
                ids=np.asarray([ids[i] for i in rows], dtype=np.int64),
                matrix=matrix.reshape(len(rows), dim),
            )
        return cls(version, dim, blocks)

    def __len__(self) -> int:
        return len(self._row)

    def search(
        self, owners: tuple[str, ...], vector: np.ndarray, limit: int, threshold: float
    ) -> list[tuple[int, float]]:
        """Best `limit` (chunk id, cosine) among `owners`' chunks scoring at least `threshold`."""
        with single_blas_thread():
            return self._search(owners, vector, limit, threshold)

    def _search(
        self, owners: tuple[str, ...], vector: np.ndarray, limit: int, threshold: float
    ) -> list[tuple[int, float]]:
        vector = np.asarray(vector, dtype=np.float32)
        found_ids: list[np.ndarray] = []
        found_scores: list[np.ndarray] = []
        for owner in owners:
            block = self.blocks.get(owner)
            if block is None or not len(block.ids):
                continue
            scores = block.matrix @ vector
            keep = scores >= threshold
            if len(scores) > limit:
                top = np.argpartition(-scores, limit)[:limit]
                mask = np.zeros(len(scores), dtype=bool)
                mask[top] = True
                keep &= mask
            found_ids.append(block.ids[keep])
            found_scores.append(scores[keep])
        if not found_ids:
            return []
        ids = np.concatenate(found_ids)
        scores = np.concatenate(found_scores)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def similarity(self, chunk_ids: list[int], vector: np.ndarray) -> dict[int, float]:
        """Cosine of each known chunk against `vector`."""
        out = {}
        for chunk_id in chunk_ids:
            where = self._row.get(chunk_id)
            if where is not None:
                owner, row = where
                out[chunk_id] = float(self.blocks[owner].matrix[row] @ vector)
        return out
