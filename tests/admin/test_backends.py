"""The console on every store backend (SQLite, and Postgres when it is available)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from copines.deps import Deps
from tests.admin.conftest import TOKEN, console_app, csrf_of, seed, sign_in
from tests.admin.test_knowledge import NEW_DOC


@pytest.fixture
async def any_deps(settings, embedder):
    """Every part on an empty store of the parametrised backend, with an admin token."""
    built = await Deps.create(
        settings.model_copy(update={"admin_token": SecretStr(TOKEN)}), embedder=embedder
    )
    try:
        yield built
    finally:
        await built.aclose()


async def test_console_on_every_backend(any_deps):
    seeded = await seed(any_deps)
    transport = httpx.ASGITransport(app=console_app(any_deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        assert (await sign_in(http)).status_code == 303
        escalation = seeded.escalations["compta"]
        conversation = seeded.conversations["compta"]
        for path in (
            "/admin/escalations",
            f"/admin/escalations/{escalation}",
            "/admin/conversations",
            f"/admin/conversations/{conversation}",
            "/admin/knowledge",
            "/admin/gaps",
            "/admin/analytics",
        ):
            assert (await http.get(path)).status_code == 200, path
        figures = (await http.get("/admin/api/analytics")).json()
        assert (figures["turns"], figures["escalations"], figures["thumbs_down"]) == (5, 1, 2)

        csrf = await csrf_of(http, f"/admin/escalations/{escalation}")
        await http.post(
            f"/admin/conversations/{conversation}/reply",
            data={
                "csrf_token": csrf,
                "content": "Bonjour de l'équipe",
                "escalation_id": str(escalation),
                "handled": "1",
            },
        )
        messages = await any_deps.store.get_messages(conversation)
        assert (messages[-1].role, messages[-1].content) == ("team", "Bonjour de l'équipe")
        assert (await any_deps.store.get_escalation(escalation)).status == "handled"

        await http.post(
            "/admin/knowledge/upload",
            data={"csrf_token": csrf, "owner": "carole"},
            files={"files": ("podcast-praticiennes.md", NEW_DOC.encode(), "text/markdown")},
        )
        page = await http.get(
            "/admin/knowledge",
            params={"expert": "carole", "q": "Quel micro choisir pour lancer mon podcast ?"},
        )
        assert "Samson Q2U" in page.text
