"""Guards over a real server: message rules, malformed JSON, body cap, origins, a busy database."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from tests.api.conftest import start


def test_messages_are_trimmed_and_checked(client: httpx.Client):
    cases = {
        "": "vide",
        "   \n\t ": "vide",
        "x" * 2001: "2000",
        "Bonjour\x07 Audrey": "caractères de contrôle",
        "Bonjour\x00": "caractères de contrôle",
    }
    for message, words in cases.items():
        response = client.post("/api/chat", json={"message": message})
        assert response.status_code == 422, (message[:20], response.text)
        assert words in response.json()["detail"]
    # 2,000 characters pass (as sent: the schema's maxLength), and so do line breaks.
    ok = client.post("/api/chat", json={"message": "é" * 1999 + "?"})
    assert ok.status_code == 200, ok.text
    padded = client.post("/api/chat", json={"message": "  " + "é" * 1999 + "?\n  "})
    assert padded.status_code == 422 and "2000" in padded.json()["detail"]
    assert client.post("/api/chat", json={"message": "Bonjour\nune question"}).status_code == 200


def test_the_message_limit_is_configurable(serve, api_settings):
    with serve(api_settings(max_message_chars=20)) as server:
        response = httpx.post(f"{server.url}/api/chat", json={"message": "x" * 21})
        assert response.status_code == 422 and "20" in response.json()["detail"]


def test_malformed_requests_get_a_readable_422(client: httpx.Client):
    broken = client.post(
        "/api/chat", content=b'{"message": "salut",', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert "JSON valide" in broken.json()["detail"]
    missing = client.post("/api/chat", json={"texte": "salut"})
    assert missing.status_code == 422
    assert missing.json()["detail"] == "Le champ « message » est obligatoire."
    wrong_type = client.post("/api/chat", json=["salut"])
    assert wrong_type.status_code == 422
    assert wrong_type.json()["detail"] == "Le corps de la requête doit être un objet JSON."
    number = client.post("/api/chat", json={"message": 42})
    assert number.json()["detail"] == "Le champ « message » doit être un texte."


def test_a_body_over_the_cap_is_refused_with_413(client: httpx.Client):
    big = {"message": "a" * 20_000}
    response = client.post("/api/chat", json=big)
    assert response.status_code == 413
    assert "trop long" in response.json()["detail"]

    # Without a Content-Length (chunked), the cap holds while reading.
    def chunks():
        for _ in range(40):
            yield b"a" * 1000

    chunked = client.post(
        "/api/chat", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413


def test_only_allowed_origins_may_call_the_api(client: httpx.Client, server):
    evil = client.post(
        "/api/chat", json={"message": "Bonjour"}, headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert "pas autorisé" in evil.json()["detail"]
    assert "access-control-allow-origin" not in evil.headers

    allowed = client.post(
        "/api/chat", json={"message": "Bonjour"}, headers={"Origin": "http://localhost:8000"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:8000"
    # The service's own pages are allowed too.
    own = client.post("/api/chat", json={"message": "Bonjour"}, headers={"Origin": server.url})
    assert own.status_code == 200

    preflight = client.options(
        "/api/chat/stream",
        headers={
            "Origin": "http://localhost:8000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-conversation-token",
        },
    )
    assert preflight.status_code == 200
    assert "x-conversation-token" in preflight.headers["access-control-allow-headers"].lower()
    evil_preflight = client.options(
        "/api/chat",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert evil_preflight.status_code == 400
    # Reading a history from a foreign page is refused as well.
    turn = start(client)
    stolen = client.get(
        f"/api/conversations/{turn['conversation_id']}",
        headers={"X-Conversation-Token": turn["token"], "Origin": "https://evil.example"},
    )
    assert stolen.status_code == 403


def test_origins_come_from_settings(serve, api_settings):
    with serve(api_settings(allowed_origins="https://lagencedescopines.com")) as server:
        headers = {"Origin": "https://lagencedescopines.com"}
        ok = httpx.post(f"{server.url}/api/chat", json={"message": "Bonjour"}, headers=headers)
        assert ok.status_code == 200
        local = httpx.post(
            f"{server.url}/api/chat",
            json={"message": "Bonjour"},
            headers={"Origin": "http://localhost:8000"},
        )
        assert local.status_code == 403


# SQLite only: it locks the database file, which Postgres has no equivalent of; Postgres is busy
# when every pooled connection is taken (test_a_busy_postgres_pool_answers_503_with_retry_after).
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_locked_database_answers_503_with_retry_after(serve, api_settings, knowledge_db):
    settings = api_settings(sqlite_busy_timeout_ms=200)
    with serve(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        turn = start(http)
        lock = sqlite3.connect(knowledge_db, timeout=1, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            busy = http.post("/api/chat", json={"message": "Bonjour, une question ?"})
            assert busy.status_code == 503, busy.text
            assert busy.headers["Retry-After"].isdigit()
            assert "réessaie" in busy.json()["detail"]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        # Nothing was lost, and the service answers again once the lock is gone.
        again = http.post(
            "/api/chat",
            json={"message": "Et maintenant ?", "conversation_id": turn["conversation_id"]},
            headers={"X-Conversation-Token": turn["token"]},
        )
        assert again.status_code == 200, again.text


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_busy_postgres_pool_answers_503_with_retry_after(serve, api_settings, knowledge_url):
    """Postgres's counterpart: one pooled connection, held by a turn waiting on a table lock."""
    import threading

    import psycopg

    settings = api_settings(pg_pool_min_size=1, pg_pool_max_size=1, pg_connect_timeout=1)
    with serve(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        turn = start(http)
        continued = {"message": "Et ensuite ?", "conversation_id": turn["conversation_id"]}
        token = {"X-Conversation-Token": turn["token"]}
        with psycopg.connect(knowledge_url) as lock:
            lock.execute("LOCK TABLE copines.messages IN ACCESS EXCLUSIVE MODE")
            waiting: list[httpx.Response] = []
            first = threading.Thread(
                target=lambda: waiting.append(http.post("/api/chat", json=continued, headers=token))
            )
            first.start()
            deadline = time.monotonic() + 10
            while not lock.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                "'copines.messages'::regclass"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the turn never waited for the lock"
                time.sleep(0.02)
            busy = http.post("/api/chat", json={"message": "Bonjour, une question ?"})
            assert busy.status_code == 503, busy.text
            assert busy.headers["Retry-After"].isdigit()
            assert "réessaie" in busy.json()["detail"]
            lock.rollback()
        first.join(30)
        # The waiting turn went through once the lock was gone.
        [answered] = waiting
        assert answered.status_code == 200, answered.text
