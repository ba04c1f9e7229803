"""Numbers out of their domain get a 422 with a French sentence (never a 500, never a reset
connection); a process that is stopping refuses new turns with a 503; a forged Host does not
make a foreign Origin the service's own."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import start


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_huge_ids_are_refused_with_a_422_on_a_kept_connection(client: httpx.Client):
    turn = start(client)
    headers = {"X-Conversation-Token": turn["token"]}
    url = f"/api/conversations/{turn['conversation_id']}"
    for after in (10**30, 2**63, 2**53):
        response = client.get(url, params={"after": after}, headers=headers)
        assert response.status_code == 422, response.text
        assert "« after »" in response.json()["detail"]
    for message_id in (10**30, 2**63, 0, -1):
        response = client.post(
            "/api/feedback",
            json={
                "conversation_id": turn["conversation_id"],
                "message_id": message_id,
                "rating": "up",
            },
            headers=headers,
        )
        assert response.status_code == 422, response.text
        assert "message_id" in response.json()["detail"]
    # The same keep-alive connection still serves.
    assert client.get(url, params={"after": 0}, headers=headers).status_code == 200


def test_a_stopping_process_refuses_new_turns_with_a_503(server, client: httpx.Client):
    server.app.state.turns.stopping = True
    try:
        for path in ("/api/chat", "/api/chat/stream"):
            response = client.post(path, json={"message": "Bonjour !"})
            assert response.status_code == 503
            assert "redémarre" in response.json()["detail"]
            assert response.headers["retry-after"]
        # Reading a conversation still works meanwhile.
        assert client.get("/healthz").status_code == 200
    finally:
        server.app.state.turns.stopping = False


def test_an_origin_matching_a_forged_host_is_refused(client: httpx.Client, server):
    forged = {"Origin": "https://evil.example", "Host": "evil.example"}
    response = client.post("/api/chat", json={"message": "Bonjour"}, headers=forged)
    assert response.status_code == 403
    # The page served by this very socket is its own origin.
    own = {"Origin": server.url}
    assert client.post("/api/chat", json={"message": "Bonjour"}, headers=own).status_code == 200


def test_the_public_origin_setting_is_the_sites_own(serve, api_settings):
    with serve(api_settings(public_origin="https://chat.agence.example")) as running:
        ok = httpx.post(
            f"{running.url}/api/chat",
            json={"message": "Bonjour"},
            headers={"Origin": "https://chat.agence.example"},
        )
        assert ok.status_code == 200
