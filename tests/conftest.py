"""Shared fixtures: settings without the developer's environment, the local embedder,
stores on every backend, the sample knowledge on every backend, and a guard against network
calls."""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from copines.config import Settings
from copines.deps import Deps
from copines.providers.embeddings import LocalEmbedder

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "knowledge"

# Read once, then hidden from Settings: tests choose their own database.
EXTERNAL_DATABASE_URL = os.environ.pop("DATABASE_URL", None)
for _name in list(os.environ):
    if _name.startswith("COPINES_") or _name in {
        "OPENROUTER_API_KEY",
        "OPENAI_API_KEY",
        "COHERE_API_KEY",
        "REDIS_URL",
    }:
        os.environ.pop(_name)


# Nothing in the tests may reach beyond this machine.
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = address[0]
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host == "localhost"
        if not local:
            raise RuntimeError(f"tests must not reach the network (tried {address!r})")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test: no .env file, no keys, data under `tmp_path`."""
    values: dict[str, object] = {"data_dir": tmp_path}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The bundled USE model, loaded once for the whole run."""
    model = LocalEmbedder(threads=2)
    model.warm_up()
    return model


def postgres_url_or_skip() -> str:
    """A Postgres URL for the tests (DATABASE_URL, or pgserver); see tests/_postgres.py."""
    try:
        from tests._postgres import postgres_url
    except ImportError:
        pytest.skip("the Postgres backend is not built yet")
    return postgres_url(EXTERNAL_DATABASE_URL)


# The Postgres cases carry the `postgres` mark: `-m "not postgres"` runs SQLite alone.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on the parametrised backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    from tests._postgres import fresh_database

    with fresh_database(postgres_url_or_skip()) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
async def deps(settings: Settings, embedder: LocalEmbedder) -> AsyncIterator[Deps]:
    """Every part, on an empty store of the parametrised backend."""
    built = await Deps.create(settings, embedder=embedder)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
def store(deps: Deps):
    return deps.store


@pytest.fixture(scope="session")
def sample_knowledge_sqlite(
    tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder
) -> Path:
    """A SQLite file with the sample knowledge ingested once per run; copy it to use it."""
    import asyncio

    folder = tmp_path_factory.mktemp("knowledge")
    settings = make_settings(folder, database_url=f"sqlite:///{folder / 'base.db'}")

    asyncio.run(_ingest_sample(settings, embedder))
    return folder / "base.db"


async def _ingest_sample(settings: Settings, embedder: LocalEmbedder) -> None:
    """Ingest the sample knowledge into the database `settings` name."""
    deps = await Deps.create(settings, embedder=embedder)
    try:
        results = await deps.ingester().ingest_paths([EXAMPLES])
        assert results and not any(r.skipped for r in results)
    finally:
        await deps.aclose()


@pytest.fixture(scope="session")
def sample_knowledge_postgres(
    tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder
) -> Iterator[tuple[str, str]]:
    """(server URL, database name): the sample knowledge ingested once per run into a Postgres
    database, left without connections so that `fresh_database(..., template=name)` copies it."""
    import asyncio

    from tests._postgres import fresh_database

    server = postgres_url_or_skip()
    folder = tmp_path_factory.mktemp("pg-knowledge")
    with fresh_database(server) as url:
        settings = make_settings(folder, database_url=url)
        asyncio.run(_ingest_sample(settings, embedder))
        yield server, urlsplit(url).path.lstrip("/")


@pytest.fixture
def knowledge_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    """`knowledge_database()` returns the URL of a new copy of the sample knowledge on the
    parametrised backend: a copied SQLite file, or a Postgres database created from the
    session's template (a file copy on the server, about as fast). Copies go at teardown."""
    with ExitStack() as copies:
        if backend == "sqlite":
            sample: Path = request.getfixturevalue("sample_knowledge_sqlite")

            numbers = itertools.count()

            def copy() -> str:
                db = tmp_path / f"knowledge{next(numbers)}.db"
                shutil.copy(sample, db)
                return f"sqlite:///{db}"

        else:
            from tests._postgres import fresh_database

            server, template = request.getfixturevalue("sample_knowledge_postgres")

            def copy() -> str:
                return copies.enter_context(fresh_database(server, template=template))

        yield copy


@pytest.fixture
def knowledge_url(knowledge_database: Callable[[], str]) -> str:
    """A fresh copy of the sample knowledge on the parametrised backend; its database URL."""
    return knowledge_database()


@pytest.fixture
async def knowledge_deps(
    tmp_path: Path, knowledge_url: str, embedder: LocalEmbedder
) -> AsyncIterator[Deps]:
    """Every part, on a copy of the sample knowledge on the parametrised backend."""
    settings = make_settings(tmp_path, database_url=knowledge_url)
    built = await Deps.create(settings, embedder=embedder)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback; `.url` for COPINES_SMTP_URL, `.inbox` for what came."""
    from tests.fakes.smtp import SMTPServer

    with SMTPServer() as server:
        yield server
