"""Notion: pages and databases read with an integration token (API version 2022-06-28).

Pages come from a database query (`POST /v1/databases/{id}/query`), a search of everything
shared with the integration (`POST /v1/search`), or one page; all paged by `start_cursor`.
A page's content is its block children (`GET /v1/blocks/{id}/children`, paged, nested blocks
read too), turned into Markdown with its headings.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from copines.config import Settings
from copines.errors import ConfigError
from copines.knowledge.sources.http import Fetcher, FetchError, http_problem

MAX_DEPTH = 6
HEADINGS = {"heading_1": "#", "heading_2": "##", "heading_3": "###"}


@dataclass
class NotionPage:
    id: str
    title: str
    url: str | None
    last_edited_time: str
    archived: bool


def rich_text(parts: list[dict[str, Any]]) -> str:
    """Notion rich text as Markdown (bold, italic, code, strikethrough; links as text)."""
    out = []
    for part in parts or []:
        text = part.get("plain_text", "")
        notes = part.get("annotations") or {}
        if text.strip():
            if notes.get("code"):
                text = f"`{text}`"
            if notes.get("bold"):
                text = f"**{text}**"
            if notes.get("italic"):
                text = f"*{text}*"
            if notes.get("strikethrough"):
                text = f"~~{text}~~"
        out.append(text)
    return "".join(out)


def page_title(page: dict[str, Any]) -> str:
    for prop in (page.get("properties") or {}).values():
        if prop.get("type") == "title":
            return rich_text(prop.get("title", [])).strip()
    return ""


def as_page(raw: dict[str, Any]) -> NotionPage:
    return NotionPage(
        id=raw["id"],
        title=page_title(raw) or "Sans titre",
        url=raw.get("url"),
        last_edited_time=raw.get("last_edited_time", ""),
        archived=bool(raw.get("archived") or raw.get("in_trash")),
    )


def block_markdown(block: dict[str, Any], depth: int) -> str | None:
    """One block as a Markdown line (children are added by the caller)."""
    kind = block.get("type", "")
    body = block.get(kind) or {}
    text = rich_text(body.get("rich_text", []))
    indent = "  " * depth
    if kind in HEADINGS:
        return f"{HEADINGS[kind]} {text}" if text.strip() else None
    if kind in ("bulleted_list_item", "toggle"):
        return f"{indent}- {text}"
    if kind == "numbered_list_item":
        return f"{indent}1. {text}"
    if kind == "to_do":
        return f"{indent}- [{'x' if body.get('checked') else ' '}] {text}"
    if kind in ("quote", "callout"):
        return f"> {text}"
    if kind == "code":
        return f"```\n{text}\n```"
    if kind == "child_page":
        return None  # a page of its own
    if kind == "table_row":
        return "| " + " | ".join(rich_text(cell) for cell in body.get("cells", [])) + " |"
    return text or None


class NotionClient:
    """The few Notion API calls a sync needs, through `fetcher` (base URL from settings)."""

    def __init__(self, settings: Settings, fetcher: Fetcher):
        if settings.notion_token is None:
            raise ConfigError(
                "no Notion token: set COPINES_NOTION_TOKEN to the integration's secret and "
                "share the pages or databases with it (see docs/knowledge.md)"
            )
        self.fetcher = fetcher
        self.base = settings.notion_api_url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {settings.notion_token.get_secret_value()}",
            "Notion-Version": settings.notion_version,
        }

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        for attempt in range(3):
            fetched = await self.fetcher.request(
                method, f"{self.base}{path}", headers=self.headers, json=body
            )
            if fetched.status == 429 and attempt < 2:  # rate limited: about 3 requests a second
                retry = fetched.headers.get("retry-after", "1")
                await asyncio.sleep(min(float(retry) if retry.isdigit() else 1.0, 10.0))
                continue
            if fetched.status != 200:
                detail = ""
                with contextlib.suppress(ValueError, AttributeError):
                    detail = fetched.json().get("message", "")
                raise FetchError(f"Notion: {http_problem(fetched)} {detail}".rstrip())
            return fetched.json()
        raise FetchError(f"Notion: still rate limited at {path}")

    async def _paged(self, method: str, path: str, body: dict | None = None) -> list[dict]:
        results: list[dict] = []
        cursor: str | None = None
        while True:
            if method == "POST":
                payload = {**(body or {}), "page_size": 100}
                if cursor:
                    payload["start_cursor"] = cursor
                page = await self._call("POST", path, payload)
            else:
                query = "?page_size=100" + (f"&start_cursor={quote(cursor)}" if cursor else "")
                page = await self._call("GET", path + query)
            results += page.get("results", [])
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return results

    async def pages(self, kind: str, target: str) -> list[NotionPage]:
        """The pages of a database, of a search, or one page.

        Raises:
            FetchError: any page of the listing failed (the listing is then incomplete).
        """
        if kind == "database":
            raw = await self._paged("POST", f"/v1/databases/{quote(target, safe='')}/query")
        elif kind == "search":
            body: dict[str, Any] = {"filter": {"property": "object", "value": "page"}}
            if target and target != "*":
                body["query"] = target
            raw = await self._paged("POST", "/v1/search", body)
        else:
            raw = [await self._call("GET", f"/v1/pages/{quote(target, safe='')}")]
        return [as_page(r) for r in raw if r.get("object") == "page"]

    async def markdown(self, page: NotionPage) -> str:
        """The page's content as Markdown, nested blocks included."""
        lines: list[str] = []
        await self._blocks(page.id, 0, lines)
        return "\n\n".join(line for line in lines if line.strip())

    async def _blocks(self, block_id: str, depth: int, lines: list[str]) -> None:
        path = f"/v1/blocks/{quote(block_id, safe='')}/children"
        for block in await self._paged("GET", path):
            line = block_markdown(block, depth)
            if line is not None:
                lines.append(line)
            nested = block.get("has_children") and block.get("type") != "child_page"
            if nested and depth < MAX_DEPTH:
                await self._blocks(block["id"], depth + 1, lines)
