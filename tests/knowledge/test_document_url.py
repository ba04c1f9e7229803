"""A document's public URL, from its front matter to the API's sources, on every backend."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from copines.deps import Deps
from copines.knowledge.loaders import load_document, split_front_matter
from tests.api.live import live_server
from tests.conftest import make_settings

URL = "https://agence-des-copines.example/guides/reels-qui-accrochent"
DOC = f"""---
title: Des reels qui accrochent
owner: carole
url: {URL}
---
# Les reels qui accrochent

## Les trois premières secondes

Le hook d'un reel se joue dans les trois premières secondes : une question, un chiffre ou une
promesse visible à l'écran avant même le son. Filme d'abord la phrase d'accroche, puis le reste.
"""


def test_front_matter_gives_title_owner_and_url_and_stays_out_of_the_text(tmp_path: Path):
    path = tmp_path / "reels-hooks.md"
    loaded = load_document(path, DOC.encode())
    assert (loaded.title, loaded.owner, loaded.url) == ("Des reels qui accrochent", "carole", URL)
    assert "url:" not in loaded.text and "owner:" not in loaded.text
    assert loaded.text.lstrip().startswith("# Les reels")


@pytest.mark.parametrize(
    "text",
    [
        "---\njust a rule line\n---\nbody",  # YAML, but not a mapping
        "---\ntitle: [unclosed\n---\nbody",  # not YAML at all
        "# No front matter\n\n---\n\ntext",
    ],
)
def test_text_without_a_front_matter_mapping_is_kept_whole(text: str):
    meta, body = split_front_matter(text)
    assert meta == {} and body == text


def test_only_web_addresses_are_kept_as_urls(tmp_path: Path):
    doc = DOC.replace(URL, "javascript:alert(1)")
    assert load_document(tmp_path / "x.md", doc.encode()).url is None


async def test_the_url_is_stored_and_carried_by_passages(deps: Deps, tmp_path: Path):
    path = tmp_path / "reels-hooks.md"
    path.write_text(DOC, encoding="utf-8")
    [result] = await deps.ingester().ingest_paths([path])
    assert (result.status, result.owner) == ("added", "carole")
    assert (await deps.store.get_document(path.name)).url == URL
    passages = (await deps.retriever.search("carole", "hook des reels trois secondes")).passages
    assert passages and passages[0].url == URL
    assert all("---" not in p.text and "url:" not in p.text for p in passages)
    # A document without one keeps a null URL, and re-ingesting without it clears it.
    path.write_text(DOC.replace(f"url: {URL}\n", ""), encoding="utf-8")
    [again] = await deps.ingester().ingest_paths([path])
    assert again.status == "updated"
    assert (await deps.store.get_document(path.name)).url is None


async def test_the_api_source_carries_the_url(tmp_path: Path, knowledge_url: str, embedder):
    path = tmp_path / "reels-hooks.md"
    path.write_text(DOC, encoding="utf-8")
    settings = make_settings(tmp_path, database_url=knowledge_url)
    deps = await Deps.create(settings, embedder=embedder)
    try:
        await deps.ingester().ingest_paths([path])
    finally:
        await deps.aclose()
    with (
        live_server(settings, embedder=embedder) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        reply = http.post(
            "/api/chat",
            json={"message": "Comment accrocher dès les trois premières secondes d'un reel ?"},
        ).json()
    assert reply["agent"] == "carole", reply
    mine = [s for s in reply["sources"] if s["filename"] == path.name]
    assert mine and mine[0]["url"] == URL
    assert all("url" in s for s in reply["sources"])
    assert URL not in reply["response"]
