"""A Notion database synced through a local server speaking the Notion API: the query and
the block children paged, nested blocks and headings kept, and the same add / update /
unchanged / remove cases as the website."""

from __future__ import annotations

from pathlib import Path

import pytest

from copines.knowledge.sources.notion import rich_text
from tests.fakes.notion import FakeNotion, block, heading, paragraph
from tests.knowledge.sources.conftest import syncer, write_sources

REELS = [
    heading(1, "Les reels qui marchent"),
    paragraph(
        "Un reel court, un hook dans les trois premières secondes, un sous-titre "
        "lisible et un appel à l'action clair en légende pour faire réagir."
    ),
    heading(2, "Idées pour une sophrologue"),
    block("bulleted_list_item", "Trois respirations pour se calmer avant une réunion"),
    block(
        "toggle",
        "Les coulisses d'une séance",
        children=[
            paragraph(
                "Montre la salle, le fauteuil, la lumière : tes futures clientes veulent "
                "se projeter avant de réserver leur première séance avec toi."
            ),
        ],
    ),
]
STORIES = [
    heading(2, "Stories du quotidien"),
    paragraph("Une story par jour suffit : un sondage, une question, une coulisse."),
]
CALENDAR = [
    heading(2, "Calendrier éditorial"),
    paragraph("Trois piliers de contenu, un post par pilier chaque semaine."),
]


@pytest.fixture
def notion():
    with FakeNotion(token="secret_notion_test") as server:
        server.add_page("db1", "p-reels", "Reels", REELS)
        server.add_page("db1", "p-stories", "Stories", STORIES)
        server.add_page("db1", "p-calendar", "Calendrier", CALENDAR)
        yield server


def settings_for(notion: FakeNotion, tmp_path: Path) -> dict:
    sources = write_sources(
        tmp_path, "sources:\n  - name: notion-carole\n    notion_database: db1\n    owner: carole\n"
    )
    return {
        "sources_file": sources,
        "notion_token": "secret_notion_test",
        "notion_api_url": notion.url,
    }


def test_rich_text_becomes_markdown():
    parts = [
        {"plain_text": "Un ", "annotations": {}},
        {"plain_text": "hook", "annotations": {"bold": True}},
        {"plain_text": " et ", "annotations": {}},
        {"plain_text": "Canva", "annotations": {"code": True, "italic": True}},
    ]
    assert rich_text(parts) == "Un **hook** et *`Canva`*"


async def test_a_notion_database_is_synced_and_kept_in_sync(make_deps, tmp_path: Path, notion):
    async with make_deps(**settings_for(notion, tmp_path)) as deps:
        async with syncer(deps) as sync:
            [first] = (await sync.sync()).sources
        assert sorted(first.added) == ["notion/Calendrier", "notion/Reels", "notion/Stories"]
        assert first.status == "ok", first.errors
        queries = [r for r in notion.requests if r.path == "/v1/databases/db1/query"]
        assert len(queries) == 2 and b"start_cursor" in queries[1].body  # paged
        reels = await deps.store.get_document("notion/Reels")
        assert reels.url == "https://www.notion.so/p-reels" and reels.owner == "carole"
        chunks = [c for c in await deps.store.all_chunks() if c.title == "Reels"]
        text = "\n".join(c.text for c in chunks)
        # Notion's heading_2 became a Markdown heading, kept in the chunk it heads.
        assert "\n## Idées pour une sophrologue\n" in text
        assert "tes futures clientes veulent se projeter" in text  # a toggle's child block
        assert any(
            r.path == "/v1/blocks/p-reels/children" and r.query.get("start_cursor")
            for r in notion.requests
        )  # a page's blocks paged

        # One page edited, one moved to the trash; the third is not read again.
        notion.edit(
            "p-stories",
            [
                heading(2, "Stories du quotidien"),
                paragraph("Deux stories par jour : un sondage et une coulisse."),
            ],
            "2026-03-01T10:00:00.000Z",
        )
        notion.pages["p-calendar"]["in_trash"] = True
        before = len(notion.requests)
        async with syncer(deps) as sync:
            [second] = (await sync.sync()).sources
        assert second.updated == ["notion/Stories"]
        assert second.removed == ["notion/Calendrier"]
        assert second.unchanged == 1
        read_again = {r.path for r in notion.requests[before:] if r.path.startswith("/v1/blocks")}
        assert read_again == {"/v1/blocks/p-stories/children"}
        assert await deps.store.get_document("notion/Calendrier") is None

        # Notion failing: nothing removed.
        notion.query_status = 502
        async with syncer(deps) as sync:
            [third] = (await sync.sync()).sources
        assert third.status == "failed" and "Notion: HTTP 502" in third.errors[0]
        assert len(await deps.store.list_documents()) == 2


async def test_a_wrong_token_is_reported(make_deps, tmp_path: Path, notion):
    settings = {**settings_for(notion, tmp_path), "notion_token": "secret_wrong"}
    async with make_deps(**settings) as deps, syncer(deps) as sync:
        [report] = (await sync.sync()).sources
    assert report.status == "failed"
    assert (
        "HTTP 401 unauthorized" in report.errors[0] and "API token is invalid" in report.errors[0]
    )


async def test_a_new_owner_for_the_source_applies_to_unchanged_pages(
    make_deps, tmp_path: Path, notion
):
    settings = settings_for(notion, tmp_path)
    async with make_deps(**settings) as deps:
        async with syncer(deps) as sync:
            await sync.sync()
        settings["sources_file"].write_text(
            "sources:\n  - name: notion-carole\n    notion_database: db1\n    owner: audrey\n"
        )
        async with syncer(deps) as sync:
            [again] = (await sync.sync()).sources
        assert again.unchanged == 3 and again.updated == []
        docs = await deps.store.list_documents()
        assert {(d.owner, d.owner_reason) for d in docs} == {("audrey", "chosen for the source")}


def _this_minute() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:00.000Z")


async def test_an_edit_in_the_minute_of_the_last_read_is_not_missed(
    make_deps, tmp_path: Path, notion
):
    # Notion gives last_edited_time to the minute: an edit made just after a sync, in the same
    # minute, carries the time the sync recorded.
    minute = _this_minute()
    notion.pages["p-stories"]["last_edited_time"] = minute
    async with make_deps(**settings_for(notion, tmp_path)) as deps, syncer(deps) as sync:
        [first] = (await sync.sync()).sources
        assert len(first.added) == 3
        notion.edit("p-stories", [paragraph("Deux stories par jour, pas plus.")], minute)
        before = len(notion.requests)
        [second] = (await sync.sync()).sources
        assert second.updated == ["notion/Stories"] and second.unchanged == 2
        read_again = {r.path for r in notion.requests[before:] if r.path.startswith("/v1/blocks")}
        assert read_again == {"/v1/blocks/p-stories/children"}  # the older pages are not
        texts = "\n".join(c.text for c in await deps.store.all_chunks())
        assert "Deux stories par jour, pas plus." in texts


async def test_a_notion_page_deleted_by_hand_comes_back(make_deps, tmp_path: Path, notion):
    async with make_deps(**settings_for(notion, tmp_path)) as deps, syncer(deps) as sync:
        await sync.sync()
        await deps.store.delete_document("notion/Reels")
        [second] = (await sync.sync()).sources
        assert second.added == ["notion/Reels"] and second.unchanged == 2
        assert await deps.store.get_document("notion/Reels") is not None


async def test_a_search_that_finds_nothing_removes_nothing(make_deps, tmp_path: Path, notion):
    settings = settings_for(notion, tmp_path)
    settings["sources_file"].write_text(
        "sources:\n  - name: tout\n    notion_search: '*'\n    owner: carole\n"
    )
    async with make_deps(**settings) as deps, syncer(deps) as sync:
        await sync.sync()
        assert len(await deps.store.list_documents()) == 3
        # The integration unshared from every page: search answers an empty 200.
        for page in notion.pages.values():
            page["in_trash"] = True
        [second] = (await sync.sync()).sources
        assert second.status == "failed" and second.removed == []
        assert "lists none of its 3 known documents: nothing removed" in second.errors[0]
        assert len(await deps.store.list_documents()) == 3
