"""The rerankers: local (offline) and Cohere over HTTP against a local Cohere server."""

from __future__ import annotations

import pytest
from tests.fakes import Reply
from tests.fakes.cohere import FakeCohere

from copines.config import Settings
from copines.providers.rerank import (
    CohereReranker,
    LocalReranker,
    asks_figure,
    build_reranker,
    holds_figure,
)
from copines.store.base import Passage

KEY = "test-cohere-key"


def passage(i: int, text: str, dense: float = 0.3, heading: str = "") -> Passage:
    return Passage(
        chunk_id=i,
        document_id=i,
        filename=f"doc-{i}.md",
        title=f"Doc {i}",
        owner="audrey",
        heading_path=heading,
        text=text,
        dense_score=dense,
    )


PASSAGES = [
    passage(1, "Les reels Instagram et les hooks des trois premières secondes.", 0.40),
    passage(2, "Configurer une séquence email de bienvenue dans Systeme.io.", 0.35),
    passage(3, "Le pixel Meta et les UTM pour suivre les conversions du tunnel.", 0.30),
    passage(4, "Recette de la tarte aux pommes.", 0.10),
]
QUERY = "comment suivre les conversions avec le pixel meta et les utm"


@pytest.fixture
def cohere():
    with FakeCohere(api_key=KEY) as server:
        yield server


@pytest.fixture
async def reranker(cohere: FakeCohere):
    built = CohereReranker(api_key=KEY, base_url=cohere.url, timeout=0.5, retries=1)
    yield built
    await built.aclose()


async def test_local_reranker_prefers_passages_saying_and_meaning_the_question():
    ranked = await LocalReranker().rerank(QUERY, PASSAGES, 2)
    # Passage 1 has the best dense score, but passage 3 covers the question's words.
    assert [p.chunk_id for p in ranked] == [3, 1]
    assert ranked[0].score > ranked[1].score
    assert ranked[0].score == pytest.approx(0.30 + 0.25 * 5 / 6 + 0.0, abs=0.1)


async def test_local_reranker_rewards_a_heading_naming_the_topic():
    a = passage(1, "Un texte sur le sujet.", 0.3, heading="Recettes")
    b = passage(2, "Un texte sur le sujet.", 0.3, heading="Pixel Meta et UTM")
    ranked = await LocalReranker().rerank("pixel meta utm", [a, b], 2)
    assert [p.chunk_id for p in ranked] == [2, 1]


async def test_cohere_request_shape(cohere: FakeCohere, reranker: CohereReranker):
    await reranker.rerank(QUERY, PASSAGES, 3)
    assert len(cohere.requests) == 1
    request = cohere.requests[0]
    assert request.method == "POST" and request.path == "/v2/rerank"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"].startswith("application/json")
    body = request.json
    assert body["model"] == "rerank-multilingual-v3.0"
    assert body["query"] == QUERY
    assert body["top_n"] == 3
    # Each document is sent with its context (title or headings) before its text.
    assert body["documents"] == [p.embed_text() for p in PASSAGES]
    assert body["documents"][0].startswith("Doc 1\n\n")


async def test_cohere_top_n_never_exceeds_the_candidates(cohere, reranker):
    await reranker.rerank(QUERY, PASSAGES[:2], 5)
    assert cohere.requests[0].json["top_n"] == 2


async def test_cohere_orders_by_relevance_score(cohere: FakeCohere, reranker: CohereReranker):
    # The service answers in its own order; the reranker trusts relevance_score, not dense.
    cohere.enqueue(
        Reply(
            json={
                "results": [
                    {"index": 3, "relevance_score": 0.2},
                    {"index": 0, "relevance_score": 0.9},
                    {"index": 2, "relevance_score": 0.5},
                ]
            }
        )
    )
    ranked = await reranker.rerank(QUERY, PASSAGES, 3)
    assert [p.chunk_id for p in ranked] == [1, 3, 4]
    assert [p.score for p in ranked] == [0.9, 0.5, 0.2]
    assert reranker.fallbacks == 0


async def test_cohere_default_answer_ranks_the_matching_passage_first(cohere, reranker):
    ranked = await reranker.rerank(QUERY, PASSAGES, 2)
    assert ranked[0].chunk_id == 3
    assert reranker.fallbacks == 0


async def test_no_passages_means_no_call(cohere, reranker):
    assert await reranker.rerank(QUERY, [], 3) == []
    assert cohere.requests == []


async def expected_local(top_n: int = 3) -> list[int]:
    return [p.chunk_id for p in await LocalReranker().rerank(QUERY, PASSAGES, top_n)]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param([Reply(status=500, json={"message": "boom"})] * 2, id="500"),
        pytest.param([Reply(status=429, headers={"Retry-After": "0"})] * 2, id="429"),
        pytest.param([Reply(status=401, json={"message": "invalid api token"})], id="401"),
        pytest.param([Reply(delay=1.5, json={"results": []})] * 2, id="timeout"),
        pytest.param([Reply(body=b"{not json at all")], id="garbage-json"),
        pytest.param([Reply(json={"unexpected": True})], id="no-results-key"),
        pytest.param(
            [Reply(json={"results": [{"index": 99, "relevance_score": 1}]})], id="bad-index"
        ),
        pytest.param([Reply(json={"results": [{"index": 0}]})], id="no-score"),
    ],
)
async def test_cohere_failure_falls_back_to_local(cohere, reranker, failure):
    cohere.enqueue(*failure)
    ranked = await reranker.rerank(QUERY, PASSAGES, 3)
    assert [p.chunk_id for p in ranked] == await expected_local()
    assert reranker.fallbacks == 1
    assert len(cohere.requests) == len(failure)


async def test_cohere_retries_once_then_answers(cohere, reranker):
    cohere.enqueue(Reply(status=503, headers={"Retry-After": "0"}))
    ranked = await reranker.rerank(QUERY, PASSAGES, 1)
    assert len(cohere.requests) == 2
    assert reranker.fallbacks == 0
    assert ranked[0].chunk_id == 3


async def test_cohere_unreachable_falls_back(unused_tcp_port: int):
    reranker = CohereReranker(
        api_key=KEY, base_url=f"http://127.0.0.1:{unused_tcp_port}", timeout=0.5, retries=0
    )
    try:
        ranked = await reranker.rerank(QUERY, PASSAGES, 3)
    finally:
        await reranker.aclose()
    assert [p.chunk_id for p in ranked] == await expected_local()
    assert reranker.fallbacks == 1


def test_build_reranker_picks_cohere_only_with_a_key(tmp_path):
    assert isinstance(build_reranker(Settings(_env_file=None)), LocalReranker)
    built = build_reranker(Settings(_env_file=None, COHERE_API_KEY="k"))
    assert isinstance(built, CohereReranker)
    assert built.model == "rerank-multilingual-v3.0"


async def test_local_reranker_prefers_a_figure_when_the_question_asks_for_one():
    plain = passage(1, "Dans un carrousel, chaque slide porte une seule idée.", 0.40)
    figure = passage(
        2,
        "Chaque carrousel suit ce plan.",
        0.36,
        heading="Carrousels > La structure en 7 à 10 slides",
    )
    step = passage(3, "Étape 1 : ouvre Canva et choisis un modèle.", 0.38)
    ranked = await LocalReranker().rerank(
        "combien de slides dans un carrousel ?", [plain, figure, step], 3
    )
    assert ranked[0].chunk_id == 2  # its heading gives the figure
    # A step's number is not a figure; without a quantity asked, no passage gets the bonus.
    assert ranked[-1].chunk_id == 3
    # Without the figure bonus, the passage closer by meaning would have come first.
    ranked = await LocalReranker(figure_weight=0).rerank(
        "combien de slides dans un carrousel ?", [plain, figure, step], 3
    )
    assert ranked[0].chunk_id == 1
    assert asks_figure("taille d'un carrousel insta ?") and not asks_figure("c'est quoi un hook ?")
    assert holds_figure("entre 3 et 8 % est un bon niveau") and not holds_figure(
        "Étape 2 : la page"
    )
