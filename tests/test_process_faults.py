"""Faults against a real `copines serve` process: SIGTERM while answers are being written,
the log lines it prints (JSON, one per turn, no key in any), and oversized request heads."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_chat import FakeChat, Reply
from tests.test_multiworker import _base_env, _copines, free_port

EXPERT, FALLBACK, ORCH = "test/expert", "test/fallback", "test/orchestrator"
KEY = "sk-or-v1-FAKEKEY-0123456789abcdef"
COHERE_KEY = "cohere-FAKEKEY-abcdef0123456789"
ADMIN = "Zq8-kP2_vX9mLr4TbN7sWc1YhJ6"
QUESTION = "Comment je crée une séquence email de bienvenue pour mon lead magnet ?"
SLOW = " ".join(f"mot{i}" for i in range(80))  # one word every 0.15 s: 12 s in all
GRACE = 2.0


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def slow_model() -> Iterator[FakeChat]:
    with FakeChat() as fake:
        fake.default(EXPERT, Reply(SLOW, chunk_delay=0.15, chunk_words=1))
        fake.default(ORCH, Reply('{"agent": "audrey", "confidence": 0.9}'))
        yield fake


@pytest.fixture
def served(knowledge_url: str, slow_model: FakeChat, tmp_path: Path):
    """`copines serve` as a process, its stdout in a file; yields (url, process, log, db)."""
    port = free_port()
    env = _base_env()
    env.update(
        DATABASE_URL=knowledge_url,
        OPENROUTER_API_KEY=KEY,
        COHERE_API_KEY=COHERE_KEY,
        COPINES_COHERE_BASE_URL="http://127.0.0.1:9",  # unreachable: the local rerank steps in
        COPINES_ADMIN_TOKEN=ADMIN,
        COPINES_LLM_BASE_URL=slow_model.url,
        COPINES_EXPERT_MODEL=EXPERT,
        COPINES_FALLBACK_MODEL=FALLBACK,
        COPINES_ORCHESTRATOR_MODEL=ORCH,
        COPINES_SHUTDOWN_GRACE=str(GRACE),
        COPINES_LOG_LEVEL="info",
        COPINES_DATA_DIR=str(tmp_path),
        COPINES_MAX_HEADER_BYTES="16384",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_copines(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "copines serve did not become ready"
            time.sleep(0.3)
        yield url, process, log, Path(knowledge_url.removeprefix("sqlite:///"))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def read_stream(url: str, events: list, got_token: threading.Event) -> None:
    with httpx.stream(
        "POST", f"{url}/api/chat/stream", json={"message": QUESTION}, timeout=60
    ) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
                if name == "token":
                    got_token.set()


def test_sigterm_lets_turns_finish_within_the_grace_and_keeps_what_was_shown(served):
    url, process, log, db = served
    streams = []
    for _ in range(3):
        events: list = []
        token = threading.Event()
        thread = threading.Thread(target=read_stream, args=(url, events, token), daemon=True)
        thread.start()
        streams.append((thread, events, token))
    for _, _, token in streams:
        assert token.wait(30), "no token arrived"
    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    for thread, _, _ in streams:
        thread.join(GRACE + 15)
    process.wait(GRACE + 20)
    took = time.monotonic() - stopped_at
    print(f"SIGTERM with 3 turns running: process gone {took:.1f} s later (grace {GRACE} s)")
    assert took < GRACE + 15
    for _, events, _ in streams:
        names = [name for name, _ in events]
        # Each visitor got the end of her turn: the error (a code, a French sentence), then done.
        assert names[-2:] == ["error", "done"], names
        error, done = events[-2][1], events[-1][1]
        assert error["code"] == "shutdown" and "redémarre" in error["message"]
        assert done["error"] == "shutdown" and done["message_id"]
    shown = {"".join(d["text"] for n, d in events if n == "token") for _, events, _ in streams}
    rows = (
        sqlite3.connect(db)
        .execute("SELECT content, status, meta FROM messages WHERE role = 'assistant'")
        .fetchall()
    )
    assert len(rows) == 3
    for content, status, meta in rows:
        assert status == "truncated" and json.loads(meta)["cause"] == "shutdown"
        assert content in shown and content.startswith("mot0")
    # The process's lines: JSON, one per turn, and no key anywhere.
    text = log.read_text()
    assert KEY not in text and COHERE_KEY not in text and ADMIN not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    turns = [line for line in lines if line.get("event") == "turn"]
    assert len(turns) == 3
    for line in turns:
        assert line["model_used"] == EXPERT and line["error"] == "shutdown"
        assert line["router"] and "fallback_used" in line and line["error_class"] == "shutdown"
        assert set(line["tokens_used"]) >= {"prompt", "completion"}
        assert set(line["cost_breakdown_usd"]) == {"chat", "orchestrator", "embeddings", "rerank"}
        assert line["timings_ms"]["total"] > 0


def test_an_oversized_request_head_is_refused_before_it_is_read(served):
    url, process, _, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        answer = b""
        try:
            for _ in range(2000):  # up to 2 MB of one header, 1 KB at a time
                sock.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(200)
        except ConnectionResetError:
            answer = b""
    assert answer.startswith(b"HTTP/1.1 431") or answer == b""
    # The server is fine, and a normal request with ordinary headers passes.
    assert httpx.get(f"{url}/healthz", headers={"X-Ok": "a" * 2000}, timeout=5).status_code == 200


@pytest.mark.parametrize("as_json", [False, True])
def test_copines_ask_logs_json_lines_at_the_set_level_without_keys(
    knowledge_url: str, tmp_path: Path, as_json: bool
):
    with FakeChat() as fake:
        fake.default(EXPERT, Reply("Voici ta réponse, étape par étape."))
        fake.default(ORCH, Reply('{"agent": "audrey", "confidence": 0.9}'))
        env = _base_env()
        env.update(
            DATABASE_URL=knowledge_url,
            OPENROUTER_API_KEY=KEY,
            COPINES_ADMIN_TOKEN=ADMIN,
            COPINES_LLM_BASE_URL=fake.url,
            COPINES_EXPERT_MODEL=EXPERT,
            COPINES_FALLBACK_MODEL=FALLBACK,
            COPINES_ORCHESTRATOR_MODEL=ORCH,
            COPINES_DATA_DIR=str(tmp_path),
        )
        command = [*_copines(), "ask", QUESTION, *(["--json"] if as_json else [])]
        info = subprocess.run(
            command, env={**env, "COPINES_LOG_LEVEL": "info"}, capture_output=True, timeout=120
        )
        quiet = subprocess.run(
            command, env={**env, "COPINES_LOG_LEVEL": "warning"}, capture_output=True, timeout=120
        )
    assert info.returncode == 0, info.stderr.decode()
    stdout, stderr = info.stdout.decode(), info.stderr.decode()
    assert KEY not in stdout + stderr and ADMIN not in stdout + stderr
    logs = stderr if as_json else stdout
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    turns = [line for line in lines if line.get("event") == "turn"]
    assert len(turns) == 1 and turns[0]["model_used"] == EXPERT
    assert turns[0]["level"] == "info" and turns[0]["logger"] == "copines.turn"
    if as_json:  # stdout holds the result alone
        assert json.loads(stdout)["response"].startswith("Voici ta réponse")
    quiet_logs = quiet.stderr.decode() + quiet.stdout.decode()
    assert '"event": "turn"' not in quiet_logs  # under the set level: no turn line
