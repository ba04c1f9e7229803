"""Experts are data: the bundled files, a third expert from a file, and invalid files."""

from __future__ import annotations

from pathlib import Path

import pytest

from copines.config import Settings
from copines.deps import Deps
from copines.errors import ConfigError
from copines.experts import BUNDLED_DIR, SHARED, load_expert_file, load_experts, owner_choices
from copines.providers.embeddings import LocalEmbedder
from tests.knowledge.experts import LEA_YAML, write_lea


def test_bundled_experts_are_complete():
    experts = load_experts()
    assert list(experts) == ["audrey", "carole"]
    for expert in experts.values():
        assert len(expert.exemplars) >= 30
        assert len(set(expert.exemplars)) == len(expert.exemplars)
        assert expert.filename_patterns and expert.persona and expert.style_rules
    assert {"automation", "funnel", "email", "kajabi"} <= set(experts["audrey"].filename_patterns)
    assert {"instagram", "contenu", "reel", "branding"} <= set(experts["carole"].filename_patterns)
    assert owner_choices(experts) == ["audrey", "carole", SHARED]


def test_a_third_expert_is_one_more_file(tmp_path: Path):
    write_lea(tmp_path)
    experts = load_experts(tmp_path)
    assert list(experts) == ["audrey", "carole", "lea"]
    assert experts["lea"].name == "Léa" and experts["lea"].temperature == 0.7
    assert owner_choices(experts) == ["audrey", "carole", "lea", SHARED]


def test_a_file_in_the_folder_replaces_the_bundled_one(tmp_path: Path):
    text = (BUNDLED_DIR / "carole.yaml").read_text(encoding="utf-8")
    (tmp_path / "carole.yaml").write_text(
        text.replace('color: "#', 'color: "#000000"\nx_old_color: "#', 1), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="x_old_color"):
        load_experts(tmp_path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('color: "#2E8B57"', "color: vert"), "color"),
        (("id: lea", "id: Léa!"), "id"),
        (("id: lea", "id: shared"), "id"),
        (("model: anthropic/claude-3-haiku\n", ""), "model"),
        (("temperature", "temperature"), None),
        (("  - seo\n  - referencement\n  - blog\n", "  []\n"), "filename_patterns"),
        (('initials: "LE"', 'initials: "LEAH"'), "initials"),
        (("tags: [seo, blog]", "tags: [seo, blog]\nunknown_field: 1"), "unknown_field"),
    ],
)
def test_an_invalid_expert_file_names_the_bad_field(tmp_path: Path, change, field):
    old, new = change
    if field is None:  # exemplars: fewer than five
        text = LEA_YAML.split("exemplars:")[0] + "exemplars:\n  - un\n  - deux\n"
        field = "exemplars"
    else:
        assert old in LEA_YAML
        text = LEA_YAML.replace(old, new)
    write_lea(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_experts(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "lea.yaml") in message
    assert f"'{field}'" in message, message


def test_file_name_must_match_the_id(tmp_path: Path):
    (tmp_path / "leah.yaml").write_text(LEA_YAML, encoding="utf-8")
    with pytest.raises(ConfigError, match="name the file lea.yaml"):
        load_expert_file(tmp_path / "leah.yaml")


def test_broken_yaml_and_missing_folder(tmp_path: Path):
    (tmp_path / "lea.yaml").write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read it as YAML"):
        load_experts(tmp_path)
    (tmp_path / "lea.yaml").write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_experts(tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        load_experts(tmp_path / "absent")


async def test_third_expert_ingests_by_its_patterns_and_searches_in_isolation(
    tmp_path: Path, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
):
    write_lea(tmp_path / "experts")
    monkeypatch.setenv("COPINES_EXPERTS_DIR", str(tmp_path / "experts"))
    settings = Settings(
        _env_file=None, data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'kb.db'}"
    )
    assert settings.experts_dir == tmp_path / "experts"
    deps = await Deps.create(settings, embedder=embedder)
    try:
        folder = tmp_path / "kb"
        folder.mkdir()
        (folder / "guide-seo-local.md").write_text(
            "# SEO local\n\n## Google Business Profile\n\n"
            + "Remplis ta fiche Google Business Profile, demande des avis à tes clientes "
            "et choisis des mots-clés locaux comme sophrologue Lyon. " * 4,
            encoding="utf-8",
        )
        (folder / "mes-reels.md").write_text(
            "# Reels\n\n" + "Filme un hook en trois secondes pour tes reels Instagram. " * 5,
            encoding="utf-8",
        )
        results = {r.filename: r for r in await deps.ingester().ingest_paths([folder])}
        assert results["guide-seo-local.md"].owner == "lea"
        assert results["guide-seo-local.md"].reason == "filename contains 'seo'"
        assert results["mes-reels.md"].owner == "carole"
        query = "avis clientes fiche Google Business Profile mots-clés locaux"
        lea = await deps.retriever.search("lea", query)
        assert lea.passages[0].filename == "guide-seo-local.md"
        for other in ("audrey", "carole"):
            found = await deps.retriever.search(other, query, k=20)
            assert "guide-seo-local.md" not in [p.filename for p in found.passages]
        reels = await deps.retriever.search("lea", "hook reels instagram", k=20)
        assert all(p.owner in ("lea", SHARED) for p in reels.passages)
    finally:
        await deps.aclose()
