"""Exact vector search in memory: one float32 matrix per owner, scanned with numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from copines.blas import use_one_blas_thread


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
        # Passage rows read for this snapshot (chunk id -> document id, filename, title, owner,
        # heading, text), filled by the store as they are asked for: a snapshot never changes.
        self.passages: dict[int, tuple] = {}
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
        use_one_blas_thread()
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        found_ids: list[np.ndarray] = []
        found_scores: list[np.ndarray] = []
        for owner in owners:
            block = self.blocks.get(owner)
            if block is None or not len(block.ids):
                continue
            scores = block.matrix @ vector  # the one pass over the rows (memory-bound)
            # The threshold first (it keeps a few percent of the rows), then the best
            # `limit` of those, kept in index order so that ties fall as before.
            rows = np.flatnonzero(scores >= threshold)
            if len(rows) > limit:
                best = np.argpartition(scores[rows], len(rows) - limit)[len(rows) - limit :]
                rows = np.sort(rows[best])
            found_ids.append(block.ids[rows])
            found_scores.append(scores[rows])
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
