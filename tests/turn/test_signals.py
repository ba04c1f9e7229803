"""The learnt signals: sentiment and buying intent read from the embedding and the cue lists."""

from __future__ import annotations

import numpy as np
import pytest

from copines.postprocess import analyze
from copines.signals import SENTIMENTS, default_model, fit


def test_the_shipped_model_reads_the_local_embedders_vectors(embedder):
    model = default_model()
    assert model is not None and model.embedder_id == embedder.id
    assert model.applies_to(np.zeros(embedder.dim, np.float32))
    assert not model.applies_to(np.zeros(1536, np.float32))  # another embedder: cues alone


@pytest.mark.parametrize(
    ("message", "sentiment", "upsell"),
    [
        ("Je veux rejoindre Visibles & Sereines, il reste des places ?", None, True),
        ("Combien coûte l'accompagnement ?", None, True),
        ("Comment programmer une story à l'avance ?", "neutral", False),
        (
            "Trop contente, j'ai eu mes trois premières inscrites grâce à ta séquence !",
            "positive",
            False,
        ),
        ("Je suis découragée, mes reels ne décollent jamais", "negative", False),
    ],
)
async def test_clear_messages_get_their_signals(embedder, message, sentiment, upsell):
    got = analyze(message, await embedder.embed_one(message), [])
    assert got.upsell is upsell
    if sentiment:
        assert got.sentiment == sentiment


async def test_with_another_embedder_the_cue_lists_decide(embedder):
    message = "Combien coûte l'accompagnement ?"
    other = np.ones(1536, np.float32) / np.sqrt(1536)
    got = analyze(message, other, [])
    assert got.upsell and got.sentiment in SENTIMENTS


async def test_fitting_is_deterministic_and_learns_the_labels(embedder):
    rows = [
        {
            "message": "Je veux m'inscrire au programme, c'est combien ?",
            "sentiment": "neutral",
            "upsell": True,
        },
        {
            "message": "Vous proposez un accompagnement individuel ?",
            "sentiment": "neutral",
            "upsell": True,
        },
        {
            "message": "Comment ajouter un lien dans ma bio ?",
            "sentiment": "neutral",
            "upsell": False,
        },
        {"message": "Quelle taille pour un carrousel ?", "sentiment": "neutral", "upsell": False},
    ]
    first, second = await fit(rows, embedder), await fit(rows, embedder)
    assert np.array_equal(first.upsell_w, second.upsell_w)
    for row in rows:
        vector = await embedder.embed_one(row["message"])
        assert (first.upsell(row["message"], vector) >= 0.5) is row["upsell"]
