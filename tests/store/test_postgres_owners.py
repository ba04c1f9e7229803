"""Postgres refuses a document owner that is no expert's (nor 'shared'), whoever writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from copines.errors import InputError
from copines.store.base import ChunkRecord, DocumentRecord
from copines.store.postgres import PostgresStore
from tests.conftest import make_settings, postgres_url_or_skip

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests._postgres import fresh_database

    with fresh_database(postgres_url_or_skip()) as url:
        yield url


def document(owner: str) -> DocumentRecord:
    return DocumentRecord(
        filename=f"fiche-{owner}.md",
        title="Fiche",
        owner=owner,
        owner_reason="test",
        tags=[],
        content_hash=owner,
        source_path="",
        category="md",
    )


async def test_an_owner_typo_is_refused_by_the_database(pg_url: str, tmp_path: Path):
    store = PostgresStore(pg_url, make_settings(tmp_path, database_url=pg_url))
    await store.open()
    try:
        chunk = [ChunkRecord(text="Un passage.", heading_path="", position=0)]
        vector = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
        await store.save_document(document("audrey"), chunk, vector, "test-embedder")
        with pytest.raises(InputError, match="audery"):
            await store.save_document(document("audery"), chunk, vector, "test-embedder")
        with pytest.raises(InputError, match="audery"):
            await store.set_owner("fiche-audrey.md", "audery", "typo")
        # A hand-written UPDATE is refused too.
        with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "UPDATE copines.documents SET agent_owner = 'audery' "
                "WHERE filename = 'fiche-audrey.md'"
            )
        assert (await store.get_document("fiche-audrey.md")).owner == "audrey"
        # A third expert's file, registered at start-up, is an owner like the others.
        await store.register_owners(["audrey", "carole", "mia", "shared"])
        await store.set_owner("fiche-audrey.md", "mia", "a third expert")
        assert (await store.get_document("fiche-audrey.md")).owner == "mia"
    finally:
        await store.close()
