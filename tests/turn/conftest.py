"""Fixtures for the turn: the fake OpenAI-compatible server, a webhook receiver, LLM-backed deps
(on a copy of the sample knowledge, on every backend)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import make_settings
from tests.fakes.openai_chat import FakeChat

from copines.deps import Deps
from copines.providers.embeddings import LocalEmbedder

ORCH = "test/orchestrator"
EXPERT = "test/expert"
FALLBACK = "test/fallback"
KEY = "sk-or-test-0123456789-secret"


@pytest.fixture
def fake_chat() -> Iterator[FakeChat]:
    with FakeChat() as server:
        yield server


@dataclass
class WebhookReceiver:
    """A local HTTP endpoint that records JSON posts; `statuses` scripts the first answers."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            self.attempts += 1
            await asyncio.sleep(self.delay)
            status = self.statuses.pop(0) if self.statuses else 200
            if status < 300:
                self.received.append(await request.json())
            return web.Response(status=status, text="ok")

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/hook", handle)
            runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def llm_settings(tmp_path: Path, url: str, database_url: str, **overrides: object):
    values: dict[str, object] = {
        "database_url": database_url,
        "llm_base_url": url,
        "openrouter_api_key": KEY,
        "orchestrator_model": ORCH,
        "expert_model": EXPERT,
        "fallback_model": FALLBACK,
        "orchestrator_timeout": 2.0,
        "llm_read_timeout": 2.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
async def llm_deps_factory(
    tmp_path: Path,
    knowledge_database: Callable[[], str],
    embedder: LocalEmbedder,
    fake_chat: FakeChat,
):
    """Build Deps on a new copy of the sample knowledge (parametrised backend), talking to the
    fake server."""
    built: list[Deps] = []

    async def make(**overrides: object) -> Deps:
        settings = llm_settings(tmp_path, fake_chat.url, knowledge_database(), **overrides)
        deps = await Deps.create(settings, embedder=embedder)
        built.append(deps)
        return deps

    yield make
    for deps in built:
        await deps.aclose()


@pytest.fixture
async def llm_deps(llm_deps_factory) -> Deps:
    return await llm_deps_factory()
