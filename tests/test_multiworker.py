"""Two `copines serve` processes on one Postgres and one Redis: a visitor may land on either, and
the conversation, its history and the rate limits are the same on both."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import postgres_url_or_skip

pytestmark = pytest.mark.postgres
REDIS_URL = "redis://127.0.0.1:6379/0"
PER_MINUTE = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of our own on the machine's Redis; its keys are deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"copines:test-multiworker:{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests._postgres import fresh_database

    with fresh_database(postgres_url_or_skip()) as url:
        subprocess.run(
            [*_copines(), "migrate"],
            env={**_base_env(), "DATABASE_URL": url},
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield url


def _copines() -> list[str]:
    copines = Path(sys.executable).with_name("copines")
    return [str(copines)] if copines.exists() else [sys.executable, "-m", "copines.cli"]


def _base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COPINES_")
        and k not in {"DATABASE_URL", "REDIS_URL", "OPENROUTER_API_KEY", "OPENAI_API_KEY"}
    }


@pytest.fixture
def two_servers(pg_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[list[str]]:
    command = _copines()
    env = _base_env()
    env.update(
        DATABASE_URL=pg_url,
        REDIS_URL=REDIS_URL,
        COPINES_RATE_LIMIT_PREFIX=redis_prefix,
        COPINES_RATE_PER_MINUTE=str(PER_MINUTE),
        COPINES_DATA_DIR=str(tmp_path),
    )
    processes, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        for process, url in zip(processes, urls, strict=True):
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "copines serve did not become ready"
                time.sleep(0.3)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_two_processes_share_conversations_history_and_limits(two_servers: list[str]) -> None:
    a, b = two_servers
    for url in (a, b):
        ready = httpx.get(f"{url}/readyz", timeout=5).json()
        assert ready["checks"]["redis"] is True

    first = httpx.post(
        f"{a}/api/chat", json={"message": "Comment écrire un hook pour un reel ?"}, timeout=60
    )
    assert first.status_code == 200, first.text
    conversation, token = first.json()["conversation_id"], first.json()["token"]
    assert token

    # The follow-up lands on the other process: it knows the conversation and its token.
    second = httpx.post(
        f"{b}/api/chat",
        json={"message": "Et combien de reels par semaine ?", "conversation_id": conversation},
        headers={"X-Conversation-Token": token},
        timeout=60,
    )
    assert second.status_code == 200, second.text
    assert second.json()["conversation_id"] == conversation

    histories = []
    for url in (a, b):
        read = httpx.get(
            f"{url}/api/conversations/{conversation}",
            headers={"X-Conversation-Token": token},
            timeout=10,
        )
        assert read.status_code == 200, read.text
        histories.append([(m["role"], m["content"]) for m in read.json()["messages"]])
    assert histories[0] == histories[1]
    assert [role for role, _ in histories[0]] == ["user", "assistant", "user", "assistant"]
    assert histories[0][2][1] == "Et combien de reels par semaine ?"
    wrong = httpx.get(
        f"{b}/api/conversations/{conversation}", headers={"X-Conversation-Token": "nope"}
    )
    assert wrong.status_code == 404

    # PER_MINUTE messages per minute from one IP, counted across both processes: the two above,
    # two more, then a refusal, whichever process answers.
    statuses = []
    for url in (a, b, a, b):
        reply = httpx.post(
            f"{url}/api/chat",
            json={"message": "Encore une question ?", "conversation_id": conversation},
            headers={"X-Conversation-Token": token},
            timeout=60,
        )
        statuses.append(reply.status_code)
    assert statuses == [200, 200, 429, 429]
