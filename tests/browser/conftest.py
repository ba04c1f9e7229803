"""Headless Chromium (Debian's, driven by Playwright) against a real server and a streaming fake
model. Without /usr/bin/chromium the tests skip with the reason; under CI they fail instead."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.api.live import LiveServer, live_server
from tests.conftest import make_settings
from tests.fakes.openai_chat import FakeChat, Reply

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ANSWER = (
    "Bonne question ! Une séquence de bienvenue, c'est comme l'accueil de ton cabinet.\n\n"
    "1. **Premier email** : remercie et livre le cadeau promis.\n"
    "2. **Deuxième email** : raconte ton histoire.\n"
    "3. **Troisième email** : propose un appel découverte.\n\n"
    "Aujourd'hui, écris juste l'objet du premier email."
)
ORCHESTRATOR = json.dumps(
    {
        "agent": "audrey",
        "confidence": 0.9,
        "primary_need": "séquence email",
        "secondary_needs": [],
        "reasoning": "Email marketing.",
    }
)


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing on CI: install Debian's chromium package")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); browser tests skipped")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def fake() -> Iterator[FakeChat]:
    """The model writes slowly enough for the tokens to be seen arriving."""
    with FakeChat() as chat:
        chat.default("orch", Reply(ORCHESTRATOR))
        chat.default("expert", Reply(ANSWER, chunk_delay=0.08, chunk_words=2))
        chat.default("fallback", Reply(ANSWER))
        yield chat


class HostSite:
    """Another site (its own loopback origin) whose page embeds the widget; `show(html)` sets it."""

    def __init__(self) -> None:
        self.html = "<!doctype html><title>vide</title>"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def show(self, html: str) -> str:
        self.html = html
        return f"{self.origin}/cabinet.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    try:
        yield site
    finally:
        site.close()


@pytest.fixture
def site_settings(
    tmp_path: Path, sample_knowledge_sqlite: Path, fake: FakeChat, host_site: HostSite
):
    db = tmp_path / "site.db"
    shutil.copy(sample_knowledge_sqlite, db)

    def build(**overrides: object):
        values: dict[str, object] = {
            "database_url": f"sqlite:///{db}",
            "openrouter_api_key": "sk-test-key",
            "llm_base_url": fake.url,
            "orchestrator_model": "orch",
            "expert_model": "expert",
            "fallback_model": "fallback",
            "llm_retries": 0,
            "allowed_origins": f"http://localhost:8000,{host_site.origin}",
        }
        values.update(overrides)
        return make_settings(tmp_path, **values)

    return build


@pytest.fixture
def site(site_settings, embedder) -> Iterator[LiveServer]:
    with live_server(site_settings(), embedder=embedder) as server:
        yield server


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR")
    outside = guard_network(context)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.errors = errors  # type: ignore[attr-defined]
    try:
        yield opened
    finally:
        context.close()
    assert not errors, errors
    assert not outside, f"the pages tried to load from outside: {outside}"


def guard_network(context) -> list[str]:
    """Refuse and record every request that leaves this machine (CDN, font, tracker)."""
    from urllib.parse import urlsplit

    outside: list[str] = []

    def check(route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", check)
    return outside
