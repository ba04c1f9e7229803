"""API fixtures: a real uvicorn server over a copy of the sample knowledge, and an HTTP client."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from copines.config import Settings
from tests.api.live import LiveServer, live_server
from tests.conftest import make_settings


@pytest.fixture
def knowledge_db(tmp_path: Path, sample_knowledge_sqlite: Path) -> Path:
    db = tmp_path / "api.db"
    shutil.copy(sample_knowledge_sqlite, db)
    return db


@pytest.fixture
def api_settings(tmp_path: Path, knowledge_db: Path) -> Callable[..., Settings]:
    """Settings over the sample knowledge; keyword overrides as for Settings."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {"database_url": f"sqlite:///{knowledge_db}"}
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
