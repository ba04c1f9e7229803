"""The knowledge half of the Store contract, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from copines.errors import EmbedderMismatchError, NotFoundError
from copines.experts import SHARED
from copines.store.base import ChunkRecord, DocumentRecord, Store

EMBEDDER = "test:unit:8"


def unit(*values: float) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def doc(filename: str, owner: str, digest: str = "h1") -> DocumentRecord:
    return DocumentRecord(
        filename=filename,
        title=filename.removesuffix(".md").replace("-", " "),
        owner=owner,
        content_hash=digest,
        owner_reason="test",
        tags=["a", "é"],
        category="md",
        priority=2,
        source_path=f"/tmp/{filename}",
    )


def chunks(*texts: str) -> list[ChunkRecord]:
    return [
        ChunkRecord(position=i, text=t, heading_path=f"Titre > {i}", keywords=["k"])
        for i, t in enumerate(texts)
    ]


async def seed(store: Store) -> None:
    await store.save_document(
        doc("a-funnel.md", "audrey"),
        chunks("tunnel de vente et page de capture", "séquence email automatique"),
        np.vstack([unit(1, 0), unit(1, 0.2)]),
        EMBEDDER,
    )
    await store.save_document(
        doc("c-reels.md", "carole"),
        chunks("reels instagram et hooks"),
        np.vstack([unit(0, 1)]),
        EMBEDDER,
    )
    await store.save_document(
        doc("agence-faq.md", SHARED),
        chunks("horaires de l'agence et tarifs"),
        np.vstack([unit(0.5, 0.5)]),
        EMBEDDER,
    )


async def test_documents_round_trip(store: Store):
    assert await store.get_embedder_id() is None
    await seed(store)
    assert await store.get_embedder_id() == EMBEDDER
    got = await store.get_document("a-funnel.md")
    assert got.owner == "audrey" and got.chunks == 2 and got.tags == ["a", "é"]
    assert (got.category, got.priority, got.content_hash) == ("md", 2, "h1")
    assert got.source_path == "/tmp/a-funnel.md" and got.owner_reason == "test"
    assert got.created_at is not None and got.updated_at == got.created_at
    assert await store.get_document("absent.md") is None
    assert [d.filename for d in await store.list_documents()] == [
        "a-funnel.md",
        "agence-faq.md",
        "c-reels.md",
    ]
    assert [d.filename for d in await store.list_documents("carole")] == ["c-reels.md"]
    assert await store.count_chunks() == 4
    stored = await store.all_chunks()
    assert [c.text for c in stored][:2] == [
        "tunnel de vente et page de capture",
        "séquence email automatique",
    ]
    assert stored[0].heading_path == "Titre > 0" and stored[0].title == "a funnel"


async def test_dense_search_is_exact_and_owner_filtered(store: Store):
    await seed(store)
    hits = await store.dense_search("audrey", unit(1, 0), 10, -1.0)
    owners = {c.id: c.title for c in await store.all_chunks()}
    assert [owners[cid] for cid, _ in hits] == ["a funnel", "a funnel", "agence faq"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert hits[2][1] == pytest.approx(float(unit(1, 0) @ unit(0.5, 0.5)), abs=1e-5)
    carole = await store.dense_search("carole", unit(1, 0), 10, -1.0)
    assert {owners[cid] for cid, _ in carole} == {"c reels", "agence faq"}
    assert await store.dense_search("carole", unit(1, 0), 10, 0.8) == []


async def test_keyword_search_is_owner_filtered(store: Store):
    await seed(store)
    titles = {c.id: c.title for c in await store.all_chunks()}
    assert [titles[i] for i in await store.keyword_search("audrey", ["tunnel"], 5)] == ["a funnel"]
    assert await store.keyword_search("carole", ["tunnel"], 5) == []
    shared = await store.keyword_search("carole", ["horair"], 5)  # a prefix
    assert [titles[i] for i in shared] == ["agence faq"]


async def test_save_refuses_vectors_of_another_embedder(store: Store):
    await seed(store)
    with pytest.raises(EmbedderMismatchError) as info:
        await store.save_document(
            doc("x.md", "audrey"), chunks("x"), np.vstack([unit(1)]), "other:model:8"
        )
    assert "copines reindex" in str(info.value)
    assert "test:unit:8" in str(info.value) and "other:model:8" in str(info.value)
    assert await store.get_document("x.md") is None


async def test_set_owner_and_delete(store: Store):
    await seed(store)
    await store.set_owner("c-reels.md", "audrey", "moved by hand")
    moved = await store.get_document("c-reels.md")
    assert (moved.owner, moved.owner_reason) == ("audrey", "moved by hand")
    assert len(await store.dense_search("audrey", unit(0, 1), 10, -1.0)) == 4
    await store.delete_document("a-funnel.md")
    assert await store.get_document("a-funnel.md") is None
    assert await store.count_chunks() == 2
    assert await store.keyword_search("audrey", ["tunnel"], 5) == []
    with pytest.raises(NotFoundError, match="no document named 'absent.md'"):
        await store.set_owner("absent.md", "audrey", "x")
    with pytest.raises(NotFoundError):
        await store.delete_document("absent.md")


async def test_replace_embeddings_switches_the_embedder(store: Store):
    await seed(store)
    ids = [c.id for c in await store.all_chunks()]
    new = np.vstack([np.eye(4, dtype=np.float32)[i % 4] for i in range(len(ids))])
    await store.replace_embeddings(ids, new, "other:model:4")
    assert await store.get_embedder_id() == "other:model:4"
    hits = await store.dense_search("audrey", np.eye(4, dtype=np.float32)[1], 10, 0.5)
    assert [cid for cid, _ in hits] == [ids[1]]
    with pytest.raises(EmbedderMismatchError):
        await store.dense_search("audrey", unit(1, 0), 10, 0.0)


async def test_get_passages_keeps_the_order_asked_and_the_owner_filter(store: Store):
    await seed(store)
    ids = [c.id for c in await store.all_chunks()]
    passages = await store.get_passages("audrey", [ids[3], ids[1], ids[0], ids[2]], unit(1, 0))
    assert [p.chunk_id for p in passages] == [ids[3], ids[1], ids[0]]  # carole's chunk dropped
    assert passages[2].dense_score == pytest.approx(1.0, abs=1e-5)
    assert passages[0].owner == SHARED and passages[1].filename == "a-funnel.md"
    assert passages[1].heading_path == "Titre > 1"
    assert await store.get_passages("audrey", []) == []
