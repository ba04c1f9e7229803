"""API fixtures: a real uvicorn server over a copy of the sample knowledge (on SQLite and on
Postgres: `backend` is parametrised in tests/conftest.py), and an HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from copines.config import Settings
from tests.api.live import LiveServer, live_server
from tests.conftest import make_settings


@pytest.fixture
def knowledge_db(knowledge_url: str) -> Path:
    """The SQLite file behind `knowledge_url`, for the tests that only SQLite has a file for."""
    if not knowledge_url.startswith("sqlite:///"):
        pytest.fail("knowledge_db is SQLite's: parametrize the test with backend=['sqlite']")
    return Path(knowledge_url.removeprefix("sqlite:///"))


@pytest.fixture
def api_settings(tmp_path: Path, knowledge_url: str) -> Callable[..., Settings]:
    """Settings over a copy of the sample knowledge on the parametrised backend; keyword
    overrides as for Settings."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {"database_url": knowledge_url}
        values.update(overrides)
        return make_settings(tmp_path, **values)

    return build


@pytest.fixture
def serve(embedder) -> Callable[[Settings], AbstractContextManager[LiveServer]]:
    """`with serve(settings) as server:` runs a real server for the block."""
    return lambda settings, **kw: live_server(settings, embedder=embedder, **kw)


@pytest.fixture
def server(serve, api_settings) -> Iterator[LiveServer]:
    """A server with the default guards, answering offline (no model key)."""
    with serve(api_settings()) as running:
        yield running


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def start(http: httpx.Client, message: str = "Comment créer un tunnel de vente ?") -> dict:
    """Start a conversation; returns the turn's JSON."""
    response = http.post("/api/chat", json={"message": message})
    assert response.status_code == 200, response.text
    return response.json()
