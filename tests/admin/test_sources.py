"""The console's sources page: listed with their last sync, counts and errors; "sync now"
behind the session and its CSRF token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from copines.deps import Deps
from copines.providers.embeddings import LocalEmbedder
from tests.admin.conftest import TOKEN, console_app, csrf_of, sign_in
from tests.conftest import make_settings
from tests.fakes.site import FakeSite
from tests.knowledge.sources.test_web_sync import HOOKS


async def test_sources_listed_and_synced_from_the_console(tmp_path: Path, embedder: LocalEmbedder):
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        site.sitemap = ["/blog/instagram-hooks", "/missing"]
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            f"sources:\n  - name: blog\n    sitemap: {site.url}/sitemap.xml\n    owner: carole\n"
        )
        settings = make_settings(
            tmp_path,
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
            admin_token=TOKEN,
            sources_file=sources,
            fetch_allow_networks=["127.0.0.1/32"],
            fetch_delay=0,
        )
        deps = await Deps.create(settings, embedder=embedder)
        app = console_app(deps)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                assert (await http.get("/admin/sources")).status_code == 303  # not signed in
                assert (await sign_in(http)).status_code == 303

                page = await http.get("/admin/sources")
                assert page.status_code == 200
                assert "blog" in page.text and "jamais synchronisée" in page.text
                assert "Synchroniser maintenant" in page.text

                refused = await http.post("/admin/sources/sync", data={"csrf_token": "forged"})
                assert refused.status_code == 403 and site.requests == []

                csrf = await csrf_of(http, "/admin/sources")
                started = await http.post("/admin/sources/sync", data={"csrf_token": csrf})
                assert started.status_code == 303
                assert started.headers["location"] == "/admin/sources?msg=sync-started"
                await app.state.sync._task

                page = await http.get("/admin/sources")
                assert "1 ajoutés" in page.text and "à jour, avec des erreurs" in page.text
                assert f"HTTP 404 not found: {site.url}/missing" in page.text
                [source] = await deps.store.list_sources()
                assert source.documents == 1 and source.last_sync_at is not None
        finally:
            await asyncio.sleep(0)
            await deps.aclose()
