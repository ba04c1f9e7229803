"""Parts for the sync tests: Deps on the parametrised backend with chosen settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from copines.deps import Deps
from copines.knowledge.sources.sync import Syncer
from copines.providers.embeddings import LocalEmbedder
from tests.conftest import make_settings

# The local fakes listen on loopback: only these tests allow it.
LOCAL = {"fetch_allow_networks": ["127.0.0.1/32"], "fetch_delay": 0.0}


@pytest.fixture
def make_deps(tmp_path: Path, database_url: str, embedder: LocalEmbedder):
    """`async with make_deps(**settings) as deps:` every part, on this test's database."""

    @asynccontextmanager
    async def build(**overrides: object) -> AsyncIterator[Deps]:
        settings = make_settings(tmp_path, database_url=database_url, **overrides)
        deps = await Deps.create(settings, embedder=embedder)
        try:
            yield deps
        finally:
            await deps.aclose()

    return build


@asynccontextmanager
async def syncer(deps: Deps, lines: list[str] | None = None) -> AsyncIterator[Syncer]:
    sync = Syncer(deps, say=(lines.append if lines is not None else None))
    try:
        yield sync
    finally:
        await sync.aclose()


def write_sources(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


Build = Callable[..., object]
