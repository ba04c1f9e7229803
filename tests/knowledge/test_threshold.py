"""The similarity floor holds for every passage, whichever search found it."""

from __future__ import annotations

from copines.deps import Deps
from copines.knowledge.retrieval import Retriever
from copines.text import search_terms

QUERY = "Comment relier Zapier à mon agenda pour mes rendez-vous ?"


async def test_keyword_hits_under_the_threshold_never_reach_the_expert(knowledge_deps: Deps):
    deps = knowledge_deps
    vector = await deps.embedder.embed_one(QUERY)
    hits = await deps.store.keyword_search("audrey", search_terms(QUERY), 20)
    passages = await deps.store.get_passages("audrey", hits, vector)
    scores = sorted(p.dense_score for p in passages)
    assert len(scores) >= 4
    # A floor in the middle of the keyword hits' similarities: those under it must go.
    floor = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    below = {p.chunk_id for p in passages if p.dense_score < floor}
    assert below

    def retriever(threshold: float) -> Retriever:
        return Retriever(
            deps.store, deps.embedder, deps.reranker, deps.experts, threshold=threshold
        )

    strict = await retriever(floor).search("audrey", QUERY, k=20)
    assert strict.passages and all(p.dense_score >= floor for p in strict.passages)
    assert not below & {p.chunk_id for p in strict.passages}
    # With no floor, some of those very keyword hits come back: the floor is what kept them out.
    loose = await retriever(-1.0).search("audrey", QUERY, k=20)
    assert below & {p.chunk_id for p in loose.passages}


async def test_the_default_floor_is_the_embedders(knowledge_deps: Deps):
    assert knowledge_deps.retriever.threshold == knowledge_deps.embedder.default_threshold == 0.15


def test_abbreviations_reach_the_documents_words():
    from copines.knowledge.retrieval import lexical_query

    assert "rendez-vous" in lexical_query("mes clientes oublient leurs rdv")
    assert "instagram" in lexical_query("ma bio insta")
    assert lexical_query("Comment créer un tunnel ?") == "Comment créer un tunnel ?"
