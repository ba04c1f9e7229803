"""Owner isolation and hybrid retrieval, on every backend.

An expert sees her documents and the shared ones, never another expert's: for every owner
pair, a query that matches the other expert's document best must not return it, at any k.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from copines.config import Settings
from copines.deps import Deps
from copines.errors import EmbedderMismatchError, NotFoundError
from copines.experts import SHARED
from copines.knowledge.retrieval import fuse
from copines.providers.embeddings import LocalEmbedder
from copines.store.base import chunk_embed_text
from copines.text import search_terms
from tests.conftest import EXAMPLES
from tests.knowledge.experts import write_lea

# One document per owner, each on a topic (and with words) of its own.
SYNTHETIC = {
    "audrey": (
        "webhooks-facturation.md",
        "# Webhooks de facturation\n\n## Le protocole Zéphyr\n\n"
        + "Le protocole Zéphyr synchronise les webhooks de facturation Stripe avec les tags "
        "ActiveCampaign, pour relancer automatiquement les paiements échoués. " * 4,
    ),
    "carole": (
        "carrousels-aquarelle.md",
        "# Carrousels aquarelle\n\n## La méthode Papillon\n\n"
        + "La méthode Papillon peint chaque slide du carrousel Instagram en aquarelle pastel, "
        "avec un hook manuscrit sur la couverture pour arrêter le scroll. " * 4,
    ),
    "lea": (
        "referencement-tournesol.md",
        "# Référencement local\n\n## La grille Tournesol\n\n"
        + "La grille Tournesol classe les mots-clés du blog par intention de recherche Google "
        "et par quartier, pour le référencement local des cabinets. " * 4,
    ),
    SHARED: (
        "horaires-studio.md",
        "# Le studio\n\n## Horaires du Studio Lumière\n\n"
        + "Le Studio Lumière de l'agence ouvre du mardi au samedi, de neuf heures à dix-huit "
        "heures, rue des Capucines, pour les ateliers en présentiel. " * 4,
    ),
}
QUERIES = {
    "audrey": "protocole Zéphyr webhooks de facturation Stripe paiements échoués",
    "carole": "méthode Papillon carrousel aquarelle pastel hook manuscrit",
    "lea": "grille Tournesol mots-clés blog intention de recherche quartier",
    SHARED: "horaires du Studio Lumière rue des Capucines ateliers",
}


@pytest.fixture
async def deps3(settings: Settings, tmp_path: Path, embedder: LocalEmbedder):
    """Every part, with a third expert (Léa) added by a file, on the parametrised backend."""
    write_lea(tmp_path / "experts")
    built = await Deps.create(
        settings.model_copy(update={"experts_dir": tmp_path / "experts"}), embedder=embedder
    )
    try:
        yield built
    finally:
        await built.aclose()


async def owners_of_chunks(deps: Deps) -> dict[int, str]:
    """chunk id -> its document's owner, read without any owner filter."""
    docs = {d.title: d.owner for d in await deps.store.list_documents()}
    return {c.id: docs[c.title] for c in await deps.store.all_chunks()}


async def assert_isolated(deps: Deps, query: str, expected_owner: str, filename: str) -> None:
    """The document answering `query` reaches its owner (and, if shared, everyone) only."""
    owners = await owners_of_chunks(deps)
    vector = await deps.embedder.embed_one(query)
    for expert in deps.experts:
        allowed = {expert, SHARED}
        # Whole pipeline, every candidate.
        result = await deps.retriever.search(expert, query, k=50)
        got = [(p.filename, p.owner) for p in result.passages]
        assert all(owner in allowed for _, owner in got), (expert, got)
        if expected_owner in allowed:
            assert got and got[0][0] == filename, (expert, query, got)
        else:
            assert filename not in [name for name, _ in got], (expert, got)
        # Each store query on its own, with no threshold and no limit to speak of.
        dense = await deps.store.dense_search(expert, vector, 10_000, -1.0)
        assert {owners[cid] for cid, _ in dense} <= allowed
        assert len(dense) == sum(1 for owner in owners.values() if owner in allowed)
        keyword = await deps.store.keyword_search(expert, search_terms(query), 10_000)
        assert {owners[cid] for cid in keyword} <= allowed
        # Hydrating another expert's chunk ids yields nothing.
        foreign = [cid for cid, owner in owners.items() if owner not in allowed]
        assert await deps.store.get_passages(expert, foreign, vector) == []


async def test_synthetic_isolation_for_every_owner_pair(deps3: Deps, tmp_path: Path):
    assert set(deps3.experts) == {"audrey", "carole", "lea"}
    folder = tmp_path / "kb"
    folder.mkdir()
    for owner, (name, text) in SYNTHETIC.items():
        (folder / name).write_text(text, encoding="utf-8")
        [result] = await deps3.ingester().ingest_paths([folder / name], owner=owner)
        assert result.owner == owner
    for owner, query in QUERIES.items():
        await assert_isolated(deps3, query, owner, SYNTHETIC[owner][0])


async def test_sample_knowledge_isolation(deps: Deps, tmp_path: Path):
    folder = tmp_path / "kb"
    shutil.copytree(EXAMPLES, folder)
    await deps.ingester().ingest_paths([folder])
    docs = await deps.store.list_documents()
    assert {d.owner for d in docs} == {"audrey", "carole", SHARED}
    owners = await owners_of_chunks(deps)
    chunks = await deps.store.all_chunks()
    for doc in docs:
        # Each document's own first passage is the query that matches it best.
        first = next(c for c in chunks if c.title == doc.title)
        query = first.text[:300]
        for expert in deps.experts:
            allowed = {expert, SHARED}
            result = await deps.retriever.search(expert, query, k=20)
            got = [p.filename for p in result.passages]
            assert all(p.owner in allowed for p in result.passages), (expert, doc.filename)
            if doc.owner in allowed:
                assert got[0] == doc.filename, (expert, doc.filename, got)
            else:
                assert doc.filename not in got
        vector = await deps.embedder.embed_one(chunk_embed_text(doc.title, "", query))
        for expert in deps.experts:
            dense = await deps.store.dense_search(expert, vector, 10_000, -1.0)
            assert {owners[cid] for cid, _ in dense} <= {expert, SHARED}


async def test_shared_documents_reach_every_expert(knowledge_deps: Deps):
    for query, filename in [
        (
            "Combien coûte l'accompagnement individuel de l'agence ?",
            "agence-offres-et-formations.md",
        ),
        ("définition du mot tripwire dans le glossaire", "agence-glossaire.md"),
    ]:
        for expert in knowledge_deps.experts:
            result = await knowledge_deps.retriever.search(expert, query, k=5)
            assert filename in [p.filename for p in result.passages], (expert, query)


async def test_moving_or_deleting_a_document_changes_who_sees_it(deps: Deps, tmp_path: Path):
    name, text = SYNTHETIC["audrey"]
    (tmp_path / name).write_text(text, encoding="utf-8")
    await deps.ingester().ingest_paths([tmp_path / name], owner="audrey")
    query = QUERIES["audrey"]

    async def seen_by(expert: str) -> bool:
        result = await deps.retriever.search(expert, query, k=10)
        return name in [p.filename for p in result.passages]

    assert await seen_by("audrey") and not await seen_by("carole")
    await deps.store.set_owner(name, "carole", "set by hand")
    assert await seen_by("carole") and not await seen_by("audrey")
    await deps.store.set_owner(name, SHARED, "set by hand")
    assert await seen_by("carole") and await seen_by("audrey")
    await deps.store.delete_document(name)
    assert not await seen_by("carole") and not await seen_by("audrey")
    assert await deps.store.count_chunks() == 0


async def test_unknown_expert_is_refused(knowledge_deps: Deps):
    with pytest.raises(NotFoundError, match="no expert 'bob'; choose one of: audrey, carole"):
        await knowledge_deps.retriever.search("bob", "bonjour")
    with pytest.raises(NotFoundError):
        await knowledge_deps.retriever.search(SHARED, "bonjour")


async def test_keyword_search_folds_accents_and_prefixes(deps: Deps, tmp_path: Path):
    path = tmp_path / "notes-funnel.md"
    path.write_text(
        "# Étapes\n\nLa première étape du tunnel : créer la page de capture. " * 3, encoding="utf-8"
    )
    await deps.ingester().ingest_paths([path], owner="audrey")
    assert await deps.store.keyword_search("audrey", ["etape"], 5)  # no accent, singular
    assert await deps.store.keyword_search("audrey", search_terms("ÉTAPES ?"), 5)
    assert await deps.store.keyword_search("audrey", ['capt"ure'], 5)  # quotes cannot break out
    assert await deps.store.keyword_search("carole", ["etape"], 5) == []
    assert await deps.store.keyword_search("audrey", [], 5) == []


async def test_dense_threshold_and_limit(deps: Deps, tmp_path: Path):
    name, text = SYNTHETIC["carole"]
    (tmp_path / name).write_text(text, encoding="utf-8")
    await deps.ingester().ingest_paths([tmp_path / name], owner="carole")
    vector = await deps.embedder.embed_one(QUERIES["carole"])
    hits = await deps.store.dense_search("carole", vector, 5, -1.0)
    assert hits and all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))
    assert await deps.store.dense_search("carole", vector, 5, hits[0][1] + 0.01) == []
    assert len(await deps.store.dense_search("carole", vector, 1, -1.0)) == 1
    # get_passages fills the dense score from the same vectors.
    [passage] = await deps.store.get_passages("carole", [hits[0][0]], vector)
    assert passage.dense_score == pytest.approx(hits[0][1], abs=1e-4)


def test_fuse_rewards_agreement():
    dense = [(1, 0.9), (2, 0.8), (3, 0.7)]
    keyword = [3, 4, 1]
    assert fuse(dense, keyword, 10)[:2] == [1, 3]
    assert fuse(dense, keyword, 2) == [1, 3]
    assert set(fuse(dense, keyword, 10)) == {1, 2, 3, 4}
    assert fuse([], [], 5) == []


async def test_searching_with_another_embedder_of_the_same_size_is_refused(
    knowledge_deps: Deps,
):
    from copines.knowledge.retrieval import Retriever

    class Impostor(LocalEmbedder):
        """Same model, same size, another name: what a swapped model would look like."""

        id = "openai:text-embedding-3-small:512"

    impostor = Impostor.__new__(Impostor)
    impostor.__dict__.update(knowledge_deps.embedder.__dict__)
    retriever = Retriever(
        knowledge_deps.store, impostor, knowledge_deps.reranker, list(knowledge_deps.experts)
    )
    with pytest.raises(EmbedderMismatchError, match="copines reindex"):
        await retriever.search("audrey", "tunnel de vente")
    wrong_size = np.ones(64, dtype=np.float32) / 8
    with pytest.raises(EmbedderMismatchError, match="copines reindex"):
        await knowledge_deps.store.dense_search("audrey", wrong_size, 5, 0.0)
