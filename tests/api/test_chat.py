"""POST /api/chat, GET /api/conversations/{id}, POST /api/feedback over a real server."""

from __future__ import annotations

import httpx

from copines.store import create_store
from copines.store.base import Message
from tests.api.conftest import start

TURN_FIELDS = {
    "conversation_id",
    "token",
    "message_id",
    "response",
    "agent",
    "agent_name",
    "confidence",
    "sources",
    "escalated",
    "loop_detected",
    "sentiment",
    "upsell",
    "timings_ms",
}


def test_a_first_message_starts_a_conversation_and_gets_the_whole_turn(client: httpx.Client):
    turn = start(client, "Comment je crée une séquence d'emails de bienvenue ?")
    assert set(turn) >= TURN_FIELDS
    assert len(turn["token"]) >= 32
    assert turn["response"].strip()
    assert turn["agent"] in {"audrey", "carole", "escalate"}
    assert isinstance(turn["message_id"], int)
    assert turn["agent_name"] in {"Audrey", "Carole", "Lou"}  # Lou: the assistant, on a hand-off

    # The token continues it, from the header or from the body; no new token is issued.
    again = client.post(
        "/api/chat",
        json={"message": "Et combien d'emails ?", "conversation_id": turn["conversation_id"]},
        headers={"X-Conversation-Token": turn["token"]},
    )
    assert again.status_code == 200, again.text
    assert again.json()["conversation_id"] == turn["conversation_id"]
    assert again.json()["token"] is None
    body_token = client.post(
        "/api/chat",
        json={
            "message": "Merci !",
            "conversation_id": turn["conversation_id"],
            "token": turn["token"],
        },
    )
    assert body_token.status_code == 200, body_token.text


def test_continuing_needs_the_conversation_token(client: httpx.Client):
    mine, theirs = start(client), start(client, "Comment écrire un bon hook de reel ?")
    for headers in (
        {},
        {"X-Conversation-Token": "nope"},
        {"X-Conversation-Token": theirs["token"]},
    ):
        response = client.post(
            "/api/chat",
            json={"message": "Et ensuite ?", "conversation_id": mine["conversation_id"]},
            headers=headers,
        )
        assert response.status_code == 404, response.text
        assert "introuvable" in response.json()["detail"]


def test_the_history_is_read_with_its_token_only(client: httpx.Client):
    mine = start(client)
    theirs = start(client, "Comment écrire un bon hook de reel ?")
    url = f"/api/conversations/{mine['conversation_id']}"

    history = client.get(url, headers={"X-Conversation-Token": mine["token"]})
    assert history.status_code == 200
    messages = history.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Comment créer un tunnel de vente ?"
    answer = messages[1]
    assert answer["id"] == mine["message_id"]
    assert answer["content"] == mine["response"]
    assert answer["agent"] == mine["agent"] and answer["agent_name"] == mine["agent_name"]
    assert [s["filename"] for s in answer["sources"]] == [s["filename"] for s in mine["sources"]]
    assert answer["created_at"]

    # Someone else's token, a wrong token, no token, an unknown id: 404, never the history.
    for headers in ({"X-Conversation-Token": theirs["token"]}, {"X-Conversation-Token": "x"}, {}):
        refused = client.get(url, headers=headers)
        assert refused.status_code == 404
        assert "messages" not in refused.json()
    unknown = client.get(
        "/api/conversations/00000000-0000-4000-8000-000000000000",
        headers={"X-Conversation-Token": mine["token"]},
    )
    assert unknown.status_code == 404


async def test_after_returns_only_newer_messages_including_the_team(
    client: httpx.Client, api_settings
):
    turn = start(client)
    # The console writes the team's reply into the same database.
    store = create_store(api_settings())
    await store.open()
    try:
        await store.add_message(
            Message(turn["conversation_id"], "team", "Bonjour, c'est Julie de l'équipe !")
        )
    finally:
        await store.close()

    newer = client.get(
        f"/api/conversations/{turn['conversation_id']}",
        params={"after": turn["message_id"]},
        headers={"X-Conversation-Token": turn["token"]},
    )
    assert newer.status_code == 200
    messages = newer.json()["messages"]
    assert [(m["role"], m["agent_name"]) for m in messages] == [("team", "L'équipe")]
    assert messages[0]["content"] == "Bonjour, c'est Julie de l'équipe !"
    assert messages[0]["id"] > turn["message_id"]


def test_feedback_rates_an_answer_of_ones_own_conversation(client: httpx.Client):
    turn, other = start(client), start(client, "Comment écrire un bon hook de reel ?")
    headers = {"X-Conversation-Token": turn["token"]}
    body = {"conversation_id": turn["conversation_id"], "message_id": turn["message_id"]}

    up = client.post("/api/feedback", json={**body, "rating": "up"}, headers=headers)
    assert up.status_code == 201, up.text
    assert up.json()["rating"] == "up"
    down = client.post(
        "/api/feedback", json={**body, "rating": "down", "comment": "trop long"}, headers=headers
    )
    assert down.status_code == 201

    bad = client.post("/api/feedback", json={**body, "rating": "bof"}, headers=headers)
    assert bad.status_code == 422 and "rating" in bad.json()["detail"]
    # Another visitor's answer, the visitor's own message, or no token: 404.
    foreign = {"conversation_id": other["conversation_id"], "message_id": other["message_id"]}
    assert (
        client.post("/api/feedback", json={**foreign, "rating": "up"}, headers=headers).status_code
        == 404
    )
    own_question = {**body, "message_id": turn["user_message_id"], "rating": "up"}
    assert client.post("/api/feedback", json=own_question, headers=headers).status_code == 404
    assert client.post("/api/feedback", json={**body, "rating": "up"}).status_code == 404


def test_small_talk_gets_the_assistant_and_keeps_the_conversations_expert(client: httpx.Client):
    """Agent `assistant` end to end: the API's answer, the stored message, the history."""
    turn = start(client, "Comment je crée une séquence d'emails de bienvenue ?")
    headers = {"X-Conversation-Token": turn["token"]}
    hello = client.post(
        "/api/chat",
        json={"message": "Merci beaucoup !", "conversation_id": turn["conversation_id"]},
        headers=headers,
    ).json()
    assert hello["agent"] == "assistant" and not hello["escalated"]
    assert hello["agent_name"] == "Lou" and hello["initials"] == "LO"  # COPINES_ASSISTANT_NAME
    assert hello["label"] == "assistante"
    assert hello["response"].strip() and not hello["sources"]
    history = client.get(f"/api/conversations/{turn['conversation_id']}", headers=headers).json()
    stored = [m for m in history["messages"] if m["role"] == "assistant"][-1]
    assert stored["agent"] == "assistant" and stored["agent_name"] == "Lou"
    assert stored["label"] == "assistante"
    # The expert of the conversation is unchanged: a follow-up goes back to her.
    follow = client.post(
        "/api/chat",
        json={"message": "et combien d'emails ?", "conversation_id": turn["conversation_id"]},
        headers=headers,
    ).json()
    assert follow["agent"] == turn["agent"]
