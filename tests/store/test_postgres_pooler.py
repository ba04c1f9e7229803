"""Postgres through a real transaction-mode pooler (PgBouncer, as Supabase's port 6543): every
transaction may run on another server connection, and here all of them share a single one."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from copines.store.base import ChunkRecord, DocumentRecord, Message
from copines.store.postgres import PostgresStore
from tests.conftest import make_settings, postgres_url_or_skip

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(shutil.which("pgbouncer") is None, reason="pgbouncer is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> list[str]:
    """PgBouncer refuses to run as root: under root, run it as the database's system user."""
    if os.geteuid() != 0:
        return []
    for user in ("pgserver", "postgres", "nobody"):
        try:
            pwd.getpwnam(user)
            return ["-u", user]
        except KeyError:
            continue
    pytest.skip("no unprivileged user to run pgbouncer as")


@pytest.fixture
def bouncer_url() -> Iterator[str]:
    """A fresh database, reached through PgBouncer in transaction mode with ONE server
    connection; yields the pooler's URL."""
    from tests._postgres import fresh_database

    with fresh_database(postgres_url_or_skip()) as direct:
        target = conninfo_to_dict(direct)
        folder = Path(tempfile.mkdtemp(prefix="copines-pgbouncer-"))
        folder.chmod(0o755)
        port = _free_port()
        server = " ".join(
            f"{key}={target[key]}" for key in ("host", "port", "user") if target.get(key)
        )
        (folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{target['dbname']} = {server} dbname={target['dbname']}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            "default_pool_size = 1\nmax_client_conn = 50\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        log = (folder / "pgbouncer.log").open("w")
        process = subprocess.Popen(
            ["pgbouncer", *_run_as(), str(folder / "pgbouncer.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"postgresql://{target.get('user') or 'postgres'}@127.0.0.1:{port}/{target['dbname']}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with psycopg.connect(url, connect_timeout=2) as conn:
                        conn.execute("SELECT 1")
                    break
                except psycopg.OperationalError:
                    log.flush()
                    assert process.poll() is None, (folder / "pgbouncer.log").read_text()
                    assert time.monotonic() < deadline, "pgbouncer did not start"
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(10)
            log.close()
            shutil.rmtree(folder, ignore_errors=True)


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def test_the_pooler_really_shares_one_server_connection(bouncer_url: str) -> None:
    """The control: psycopg's default (prepared statements kept on the connection) breaks
    here, so the test below would catch a store that kept them."""
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        async with (
            await psycopg.AsyncConnection.connect(bouncer_url, prepare_threshold=0) as a,
            await psycopg.AsyncConnection.connect(bouncer_url, prepare_threshold=0) as b,
        ):
            await a.execute("SELECT 1")
            await a.commit()
            await b.execute("SELECT 1")


async def test_the_store_works_through_a_transaction_pooler(
    bouncer_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=bouncer_url,
        pg_pool_min_size=4,
        pg_pool_max_size=4,
        pg_exact_search_below=50,
    )
    store = PostgresStore(bouncer_url, settings)
    await store.open()  # the migrations run through the pooler too
    try:
        vectors = _unit(60, 16, 0)
        for owner in ("audrey", "carole", "shared"):
            await store.save_document(
                DocumentRecord(f"{owner}.md", owner, owner, "h"),
                [ChunkRecord(i, f"séquence email {owner} {i}") for i in range(60)],
                vectors,
                "test:16",
            )
        await store.create_conversation("c1", "hash")

        async def one_turn(i: int) -> None:
            exact = await store.match_chunks("audrey", vectors[i], 10, -1.0, exact=True)
            approx = await store.match_chunks(
                "audrey", vectors[i], 10, -1.0, exact=False, ef_search=100 + i
            )
            assert exact[0][1] == pytest.approx(1.0, abs=1e-5)
            assert approx[0][0] in {cid for cid, _ in exact}
            assert await store.keyword_search("carole", ["sequence"], 5)
            await store.add_message(Message("c1", "user", f"question {i}"))
            await store.get_messages("c1", limit=3)

        for _ in range(2):  # past psycopg's prepare threshold, on every client connection
            await asyncio.gather(*(one_turn(i) for i in range(12)))
        assert len(await store.get_messages("c1")) == 24
        assert await store.dense_search("audrey", vectors[0], 5, 0.0)
    finally:
        await store.close()
