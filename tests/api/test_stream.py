"""POST /api/chat/stream over a real server, with the fake OpenAI-compatible model streaming."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.live import LiveServer
from tests.fakes.openai_chat import FakeChat, Reply, Status

ANSWER = (
    "Une séquence de bienvenue, c'est comme accueillir quelqu'un dans ton cabinet. "
    "1. Écris un premier email qui remercie et livre le cadeau promis. "
    "2. Raconte ton histoire dans le deuxième. 3. Propose un rendez-vous dans le troisième."
)
ORCHESTRATOR = json.dumps(
    {
        "agent": "audrey",
        "confidence": 0.9,
        "primary_need": "séquence email",
        "secondary_needs": [],
        "reasoning": "Question d'email marketing.",
    }
)
QUESTION = "Comment je crée une séquence d'emails de bienvenue pour mes nouvelles abonnées ?"


@pytest.fixture
def fake() -> Iterator[FakeChat]:
    with FakeChat() as chat:
        chat.default("orch", Reply(ORCHESTRATOR))
        chat.default("expert", Reply(ANSWER, chunk_delay=0.02, chunk_words=3))
        chat.default("fallback", Reply(ANSWER))
        yield chat


@pytest.fixture
def model_server(serve, api_settings, fake: FakeChat) -> Iterator[LiveServer]:
    settings = api_settings(
        openrouter_api_key="sk-test-key",
        llm_base_url=fake.url,
        orchestrator_model="orch",
        expert_model="expert",
        fallback_model="fallback",
        llm_retries=0,
    )
    with serve(settings) as server:
        yield server


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Parse a server-sent events body into (event, data) pairs."""
    events = []
    for block in response.text.split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def stream(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    response = httpx.post(f"{url}/api/chat/stream", json=body, headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response


def test_events_come_in_order_and_end_with_the_whole_turn(model_server: LiveServer):
    events = read_events(stream(model_server.url, {"message": QUESTION}))
    names = [name for name, _ in events]
    assert names[0] == "decision"
    assert names[-1] == "done"
    assert names.count("done") == 1 and "error" not in names
    assert names.count("token") >= 5, names  # the model's pieces, as they were written
    assert "sources" in names and names.index("sources") < names.index("done")

    decision = events[0][1]
    assert decision["agent"] == "audrey" and decision["agent_name"] == "Audrey"
    assert decision["color"].startswith("#") and decision["initials"]
    assert decision["conversation_id"] and len(decision["token"]) >= 32  # new conversation

    done = events[-1][1]
    streamed = "".join(data["text"] for name, data in events if name == "token")
    assert streamed.split() == ANSWER.split()
    assert done["response"].split()[:5] == ANSWER.split()[:5]
    assert done["conversation_id"] == decision["conversation_id"]
    assert done["token"] == decision["token"]
    sources = next(data for name, data in events if name == "sources")["sources"]
    assert sources and done["sources"] == sources
    assert {"filename", "title", "owner", "score", "heading", "url"} <= set(sources[0])

    # The final object is the same one POST /api/chat returns.
    whole = httpx.post(
        f"{model_server.url}/api/chat",
        json={"message": "Et combien d'emails ?", "conversation_id": done["conversation_id"]},
        headers={"X-Conversation-Token": done["token"]},
        timeout=30,
    ).json()
    assert set(whole) == set(done)

    # The conversation continues over the stream with its token; no new token then.
    again = read_events(
        stream(
            model_server.url,
            {"message": "Et pour la relance ?", "conversation_id": done["conversation_id"]},
            {"X-Conversation-Token": done["token"]},
        )
    )
    assert again[0][1]["token"] is None and again[-1][1]["token"] is None
    history = httpx.get(
        f"{model_server.url}/api/conversations/{done['conversation_id']}",
        headers={"X-Conversation-Token": done["token"]},
    ).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 3


def test_a_failing_model_streams_a_french_error_and_keeps_the_message(
    model_server: LiveServer, fake: FakeChat
):
    fake.default("expert", Status(500))
    fake.default("fallback", Status(503))
    events = read_events(stream(model_server.url, {"message": QUESTION}))
    names = [name for name, _ in events]
    assert names[0] == "decision" and "error" in names
    error = dict(events)["error"]
    assert error["retryable"] is True
    assert "Réessaie" in error["message"] or "réessaie" in error["message"]
    done = dict(events).get("done")
    assert done is not None and done["error"]
    # The visitor's question is stored; nothing is lost.
    history = httpx.get(
        f"{model_server.url}/api/conversations/{done['conversation_id']}",
        headers={"X-Conversation-Token": done["token"]},
    ).json()["messages"]
    assert history[0]["role"] == "user" and history[0]["content"] == QUESTION
    metrics = httpx.get(f"{model_server.url}/metrics").text
    assert "copines_turn_errors_total" in metrics


def test_the_stream_is_guarded_like_the_chat(model_server: LiveServer):
    url = f"{model_server.url}/api/chat/stream"
    assert httpx.post(url, json={"message": " "}).status_code == 422
    assert httpx.post(url, json={"message": QUESTION, "conversation_id": "x"}).status_code == 404
    foreign = httpx.post(
        url, json={"message": QUESTION}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403


def test_metrics_count_turns_steps_tokens_and_cost(model_server: LiveServer):
    stream(model_server.url, {"message": QUESTION})
    text = httpx.get(f"{model_server.url}/metrics").text
    assert 'copines_turns_total{expert="audrey",router=' in text
    assert 'copines_turn_step_seconds_count{step="generation"}' in text
    assert 'copines_llm_tokens_total{kind="completion"}' in text
    assert "copines_llm_cost_usd_total" in text
    assert "copines_stream_first_token_seconds_count 1.0" in text


def test_a_visitor_who_leaves_mid_answer_loses_nothing(model_server: LiveServer, fake: FakeChat):
    fake.default("expert", Reply(ANSWER, chunk_delay=0.3, chunk_words=1))
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", f"{model_server.url}/api/chat/stream", json={"message": QUESTION}) as r,
    ):
        decision = None
        for line in r.iter_lines():
            if line.startswith("data:") and decision is None:
                decision = json.loads(line[5:])
            if line.startswith("event: token"):
                break  # the visitor closes the page while the answer is being written
    assert decision is not None
    headers = {"X-Conversation-Token": decision["token"]}
    url = f"{model_server.url}/api/conversations/{decision['conversation_id']}"
    for _ in range(100):
        messages = httpx.get(url, headers=headers).json()["messages"]
        if len(messages) == 2:
            break
        time.sleep(0.1)
    assert messages[0]["role"] == "user" and messages[0]["content"] == QUESTION
    # What had been sent to her is kept (cut short), never marked as a whole answer.
    assert messages[1]["role"] == "assistant" and messages[1]["status"] == "truncated"
    assert messages[1]["content"] and ANSWER.startswith(messages[1]["content"])
    # The service carries on for everyone, her included.
    again = httpx.post(
        f"{model_server.url}/api/chat",
        json={"message": "Tu peux répéter ?", "conversation_id": decision["conversation_id"]},
        headers=headers,
        timeout=30,
    )
    assert again.status_code == 200
