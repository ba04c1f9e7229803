"""A local server speaking the Notion API (version 2022-06-28) for the sync tests: database
queries and search paged by `start_cursor`, pages, block children paged and nested, the
integration token and the Notion-Version header checked.

    with FakeNotion("secret_test") as notion:
        notion.add_page("db1", "p1", "Hooks", [heading(2, "Formules"), paragraph("...")])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._threaded import ThreadedServer


def _text(content: str, **notes: bool) -> list[dict[str, Any]]:
    annotations = {"bold": False, "italic": False, "code": False, "strikethrough": False}
    annotations.update(notes)
    return [
        {
            "type": "text",
            "plain_text": content,
            "annotations": annotations,
            "text": {"content": content},
        }
    ]


def block(kind: str, content: str = "", children: list[dict] | None = None, **extra) -> dict:
    body = {"rich_text": _text(content), **extra} if content else dict(extra)
    return {"object": "block", "type": kind, kind: body, "_children": children or []}


def heading(level: int, content: str) -> dict:
    return block(f"heading_{level}", content)


def paragraph(content: str, **notes: bool) -> dict:
    b = block("paragraph")
    b["paragraph"] = {"rich_text": _text(content, **notes)}
    return b


@dataclass
class FakeNotion(ThreadedServer):
    token: str = "secret_test"
    name: str = "fake-notion"
    page_size_cap: int = 2  # at most this many results per answer: paging is exercised
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    databases: dict[str, list[str]] = field(default_factory=dict)
    blocks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    query_status: int = 200
    _ids: int = 0

    def add_page(
        self,
        database: str | None,
        page_id: str,
        title: str,
        content: list[dict],
        edited: str = "2026-01-01T10:00:00.000Z",
    ) -> None:
        self.pages[page_id] = {
            "object": "page",
            "id": page_id,
            "created_time": "2026-01-01T09:00:00.000Z",
            "last_edited_time": edited,
            "archived": False,
            "in_trash": False,
            "url": f"https://www.notion.so/{page_id}",
            "properties": {"Name": {"id": "title", "type": "title", "title": _text(title)}},
        }
        if database:
            self.databases.setdefault(database, []).append(page_id)
        self.blocks[page_id] = self._store_blocks(content)

    def _store_blocks(self, content: list[dict]) -> list[dict]:
        stored = []
        for raw in content:
            self._ids += 1
            item = {k: v for k, v in raw.items() if k != "_children"}
            item["id"] = f"b{self._ids}"
            item["has_children"] = bool(raw["_children"])
            if raw["_children"]:
                self.blocks[item["id"]] = self._store_blocks(raw["_children"])
            stored.append(item)
        return stored

    def edit(self, page_id: str, content: list[dict], edited: str) -> None:
        self.blocks[page_id] = self._store_blocks(content)
        self.pages[page_id]["last_edited_time"] = edited

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/databases/{id}/query", self.query)
        app.router.add_post("/v1/search", self.search)
        app.router.add_get("/v1/pages/{id}", self.page)
        app.router.add_get("/v1/blocks/{id}/children", self.children)

    def _refuse(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(
                {
                    "object": "error",
                    "status": 401,
                    "code": "unauthorized",
                    "message": "API token is invalid.",
                },
                status=401,
            )
        if request.headers.get("Notion-Version") != "2022-06-28":
            return web.json_response(
                {
                    "object": "error",
                    "status": 400,
                    "code": "missing_version",
                    "message": "Notion-Version header failed validation",
                },
                status=400,
            )
        return None

    def _paged(self, items: list[dict], cursor: str | None, size: int) -> dict[str, Any]:
        start = int(cursor) if cursor else 0
        size = min(size, self.page_size_cap)
        more = start + size < len(items)
        return {
            "object": "list",
            "results": items[start : start + size],
            "next_cursor": str(start + size) if more else None,
            "has_more": more,
        }

    async def query(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        if self.query_status != 200:
            return web.json_response(
                {"object": "error", "message": "boom"}, status=self.query_status
            )
        database = request.match_info["id"]
        if database not in self.databases:
            return web.json_response(
                {
                    "object": "error",
                    "status": 404,
                    "code": "object_not_found",
                    "message": "not shared",
                },
                status=404,
            )
        body = json.loads(await request.read() or b"{}")
        items = [self.pages[p] for p in self.databases[database] if not self.pages[p]["in_trash"]]
        return web.json_response(
            self._paged(items, body.get("start_cursor"), body.get("page_size", 100))
        )

    async def search(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        body = json.loads(await request.read() or b"{}")
        items = [p for p in self.pages.values() if not p["in_trash"]]
        return web.json_response(
            self._paged(items, body.get("start_cursor"), body.get("page_size", 100))
        )

    async def page(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        found = self.pages.get(request.match_info["id"])
        if found is None:
            return web.json_response({"object": "error", "status": 404}, status=404)
        return web.json_response(found)

    async def children(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        items = self.blocks.get(request.match_info["id"])
        if items is None:
            return web.json_response({"object": "error", "status": 404}, status=404)
        return web.json_response(
            self._paged(
                items, request.query.get("start_cursor"), int(request.query.get("page_size", "100"))
            )
        )
