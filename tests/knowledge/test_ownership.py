"""Who owns a document: filename patterns, an explicit owner, then the content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from copines.deps import Deps
from copines.experts import SHARED, load_experts
from copines.knowledge.ownership import OwnerTagger
from copines.providers.embeddings import normalise

AUDREY_TEXT = (
    "# Mes notes\n\nPour automatiser l'envoi de la séquence de bienvenue, crée un déclencheur "
    "dans ActiveCampaign : quand une personne s'inscrit via le formulaire de la page de capture, "
    "ajoute le tag lead-magnet, puis envoie trois emails espacés de deux jours. Connecte Stripe à "
    "Zapier pour taguer les clientes après paiement. Surveille le taux d'ouverture et le taux de "
    "clics de chaque email, et teste deux objets en A/B test.\n"
)
CAROLE_TEXT = (
    "# Mes notes\n\nPour tes reels Instagram, filme un hook fort dans les trois premières "
    "secondes, puis raconte une histoire personnelle. Prépare un carrousel de sept slides avec "
    "une couverture accrocheuse et un appel à sauvegarder. Publie des stories chaque jour avec un "
    "sticker sondage pour créer de l'engagement avec ta communauté, et garde une identité "
    "visuelle cohérente avec ta palette de couleurs.\n"
)
RECIPE_TEXT = (
    "# Recette\n\nPréchauffe le four à 180 degrés. Mélange la farine, le sucre et les oeufs, "
    "puis ajoute les pommes coupées en dés. Enfourne quarante minutes.\n"
)


@pytest.fixture(scope="module")
def tagger() -> OwnerTagger:
    return OwnerTagger(load_experts(), None, ["agence", "faq", "glossaire", "shared"])  # type: ignore[arg-type]


def every_pattern() -> list[tuple[str, str]]:
    return [(e.id, p) for e in load_experts().values() for p in e.filename_patterns]


@pytest.mark.parametrize(("owner", "pattern"), every_pattern())
def test_each_expert_pattern_tags_a_filename(tagger: OwnerTagger, owner: str, pattern: str):
    decision = tagger.by_filename(f"Guide {pattern} 2024.pdf")
    assert decision is not None and decision.owner == owner
    assert decision.reason.startswith("filename contains '")
    assert decision.method == "filename"


@pytest.mark.parametrize(
    ("filename", "owner"),
    [
        # The agency's rules, word forms and the file naming habits of real folders.
        ("automation-onboarding.md", "audrey"),
        ("mon_funnel_v2.docx", "audrey"),
        ("SalesFunnels.pdf", "audrey"),
        ("emailing-noel.txt", "audrey"),
        ("kajabi.md", "audrey"),
        ("instagram-2024.md", "carole"),
        ("idees-de-contenus.md", "carole"),
        ("mes-reels.md", "carole"),
        ("Branding - Charte.docx", "carole"),
        ("Identité visuelle.md", "carole"),
        ("audrey-notes.md", "audrey"),
        ("carole-notes.md", "carole"),
        ("agence-offres.md", SHARED),
        ("FAQ.html", SHARED),
        ("glossaire.md", SHARED),
        # Neither, or both: the content decides.
        ("notes-reunion.md", None),
        ("guide-installation.md", None),  # 'insta' starts the word but is not the word
        ("mecontentement-clientes.md", None),  # 'content' inside another word
        ("email-et-instagram.md", None),
        ("agence-funnel.md", None),
    ],
)
def test_filename_rules(tagger: OwnerTagger, filename: str, owner: str | None):
    decision = tagger.by_filename(filename)
    assert (decision.owner if decision else None) == owner


async def ingest_text(deps: Deps, tmp_path: Path, name: str, text: str, owner: str = "auto"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    [result] = await deps.ingester().ingest_paths([path], owner=owner)
    return result


@pytest.mark.parametrize(("text", "owner"), [(AUDREY_TEXT, "audrey"), (CAROLE_TEXT, "carole")])
async def test_neutral_name_falls_back_to_the_content(deps: Deps, tmp_path, text, owner):
    result = await ingest_text(deps, tmp_path, "notes-du-mardi.md", text)
    assert result.owner == owner
    assert result.reason.startswith(f"content closest to {owner} ({owner} 0.")
    doc = await deps.store.get_document("notes-du-mardi.md")
    assert doc.owner == owner and doc.owner_reason == result.reason


async def test_content_close_to_no_expert_is_shared_and_says_so(deps: Deps, tmp_path: Path):
    result = await ingest_text(deps, tmp_path, "notes-du-mardi.md", RECIPE_TEXT)
    assert result.owner == SHARED
    assert "too close to call" in result.reason
    assert (await deps.store.get_document("notes-du-mardi.md")).owner == SHARED


async def test_equal_similarity_is_too_close_to_call(deps: Deps):
    profiles = await deps.tagger.profiles()
    halfway = normalise((profiles["audrey"] + profiles["carole"])[None, :])
    decision = await deps.tagger.by_content(np.vstack([halfway, halfway]))
    assert decision.owner == SHARED and decision.method == "close"
    assert decision.reason.startswith("content too close to call (")
    leaning = normalise((profiles["audrey"] * 0.8 + profiles["carole"] * 0.2)[None, :])
    assert (await deps.tagger.by_content(leaning)).owner == "audrey"


async def test_explicit_owner_beats_filename_and_content(deps: Deps, tmp_path: Path):
    result = await ingest_text(deps, tmp_path, "instagram-reels.md", AUDREY_TEXT, owner="audrey")
    assert (result.owner, result.reason) == ("audrey", "chosen at ingestion")
    result = await ingest_text(deps, tmp_path, "guide-funnel.md", CAROLE_TEXT, owner=SHARED)
    assert result.owner == SHARED


async def test_filename_beats_content(deps: Deps, tmp_path: Path):
    result = await ingest_text(deps, tmp_path, "reels-instagram.md", AUDREY_TEXT)
    assert result.owner == "carole" and result.reason == "filename contains 'instagram'"
