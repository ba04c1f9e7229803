"""Post-processing on French examples written for these tests (independent of tests/data)."""

from __future__ import annotations

import pytest

from copines.postprocess import (
    analyze,
    cut_to_words,
    detect_loop,
    format_answer,
    safe_markdown,
    sentiment,
    upsell_trigger,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Merci beaucoup, c'est super clair !", "positive"),
        ("Youpi, ma première vente est tombée ce matin 🎉", "positive"),
        ("Je suis trop contente de mon nouveau feed", "positive"),
        ("Bravo pour ces explications, j'adore", "positive"),
        ("Comment j'ajoute un tag dans Systeme.io ?", "neutral"),
        ("Quelle taille pour une story ?", "neutral"),
        ("Je voudrais planifier mes posts de décembre.", "neutral"),
        ("J'en ai marre, mon formulaire ne fonctionne plus depuis hier", "negative"),
        ("Je suis découragée, personne ne lit mes emails", "negative"),
        ("C'est nul, aucune vue sur mes reels 😞", "negative"),
        ("Je stresse énormément avant mon lancement, j'ai peur de rater", "negative"),
        ("Ce n'est pas génial comme résultat", "negative"),
    ],
)
def test_sentiment_in_french(text, expected):
    assert sentiment(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Combien coûte votre accompagnement ?",
        "Quels sont les tarifs de la formation Instagram ?",
        "Je crois que je n'y arrive pas seule, vous pourriez m'aider à tout installer ?",
        "Vous proposez du coaching individuel ?",
        "Je voudrais m'inscrire au prochain programme",
    ],
)
def test_upsell_triggers(text):
    assert upsell_trigger(text)


@pytest.mark.parametrize(
    "text",
    [
        "Comment je crée un carrousel ?",
        "Merci, je teste ça ce soir",
        "Mon pixel ne remonte pas les achats",
    ],
)
def test_no_upsell_on_ordinary_questions(text):
    assert not upsell_trigger(text)


async def test_repeated_deep_questions_are_an_upsell_signal(embedder):
    earlier = [
        "Comment je structure ma séquence de bienvenue quand je vends des soins énergétiques ?",
        "Et pour la page de vente, quelles sections je dois prévoir et dans quel ordre ?",
        "Comment je relie ensuite le paiement Stripe à mon espace de formation sur Kajabi ?",
    ]
    previous = [await embedder.embed_one(t) for t in earlier]
    text = "Et pour les relances après le webinaire, je fais comment ?"
    vector = await embedder.embed_one(text)
    assert analyze(text, vector, previous, earlier=earlier).upsell
    assert not analyze(text, vector, previous[:1], earlier=earlier[:1]).upsell
    assert not analyze("Merci !", vector, previous, earlier=earlier).upsell


async def test_loop_by_embedding_similarity_not_exact_text(embedder):
    earlier = [
        "Comment je fais pour que mes emails n'arrivent plus dans les spams ?",
        "Mes newsletters tombent dans les courriers indésirables, je fais comment ?",
    ]
    previous = [await embedder.embed_one(t) for t in earlier]
    again = "Pourquoi mes emails finissent toujours en spam ?"
    loop, similarity = detect_loop(again, await embedder.embed_one(again), previous)
    assert loop and similarity >= 0.45
    other = "Quelle police choisir pour mes visuels Canva ?"
    loop, _ = detect_loop(other, await embedder.embed_one(other), previous)
    assert not loop
    thanks = "Merci, les emails arrivent enfin dans la boîte de réception"
    loop, _ = detect_loop(thanks, await embedder.embed_one(thanks), previous)
    assert not loop  # a thank-you on the same topic is not a loop


async def test_repeated_complaint_is_a_loop(embedder):
    earlier = ["Mon zap ne marche pas, les contacts n'arrivent pas dans ActiveCampaign"]
    previous = [await embedder.embed_one(t) for t in earlier]
    again = "Je reformule : ça ne marche toujours pas, rien n'arrive dans ActiveCampaign !"
    assert detect_loop(again, await embedder.embed_one(again), previous)[0]


async def test_analyze_combines_orchestrator_hints(embedder):
    text = "Je voudrais savoir comment faire mes stories"
    vector = await embedder.embed_one(text)
    plain = analyze(text, vector, [])
    assert plain.public() == {"sentiment": "neutral", "upsell": False, "loop": False}
    hinted = analyze(text, vector, [], sentiment_hint="negative", upsell_hint=True)
    assert hinted.sentiment == "negative" and hinted.upsell


def test_cut_at_a_sentence_boundary_near_the_limit():
    sentence = "Voici une phrase de dix mots pour tester la coupe."
    text = " ".join([sentence] * 40)  # 400 words
    cut = cut_to_words(text, 100)
    assert cut.endswith("coupe.")
    assert 50 <= len(cut.split()) <= 110
    assert cut_to_words("Court et simple.", 100) == "Court et simple."


def test_one_endless_sentence_is_cut_at_a_word():
    text = " ".join(["mot"] * 500)
    cut = cut_to_words(text, 300)
    assert len(cut.split()) <= 300 and cut.endswith("…")


def test_safe_markdown():
    text = (
        "**Étape 1** : ouvre [Systeme.io](https://systeme.io).\n"
        "<script>alert('x')</script>Clique [ici](javascript:alert(1)) "
        "![pixel](https://evil.example/p.gif) <img src=x onerror=alert(1)>\n\n\n\nFin."
    )
    out = safe_markdown(text)
    assert "**Étape 1**" in out and "[Systeme.io](https://systeme.io)" in out
    assert "<" not in out and "javascript:" not in out and "![" not in out
    assert "\n\n\n" not in out and out.endswith("Fin.")


def test_format_answer_applies_both():
    text = "<b>Bonjour</b> ! " + "Une phrase utile pour toi. " * 200
    out = format_answer(text, 300)
    assert "<b>" not in out and len(out.split()) <= 330
