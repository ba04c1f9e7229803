"""Model payloads of the wrong shape through the real HTTP API: never a 500, always an answer
row, the fallback first, then the apology with a code and a French sentence; and the SSE
keep-alive comments while the model is silent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.live import LiveServer
from tests.api.test_stream import ANSWER, ORCHESTRATOR, QUESTION, read_events
from tests.fakes.openai_chat import FakeChat, Hang, Raw, RawStream, Reply

OBJECT_CONTENT = {"choices": [{"message": {"role": "assistant", "content": {"text": "x"}}}]}
STRING_DELTA = [{"id": "x", "choices": [{"delta": "Bonjour", "finish_reason": None}]}]


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def fake() -> Iterator[FakeChat]:
    with FakeChat() as chat:
        chat.default("orch", Reply(ORCHESTRATOR))
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
        sse_keepalive_seconds=0.2,
        llm_first_token_timeout=5.0,
    )
    with serve(settings) as server:
        yield server


def stored(server: LiveServer, turn: dict) -> list[dict]:
    response = httpx.get(
        f"{server.url}/api/conversations/{turn['conversation_id']}",
        headers={"X-Conversation-Token": turn["token"]},
    )
    return response.json()["messages"]


@pytest.mark.parametrize("fallback_ok", [True, False])
def test_object_content_on_api_chat(model_server, fake: FakeChat, fallback_ok: bool):
    fake.default("expert", Raw(OBJECT_CONTENT))
    fake.default("fallback", Reply(ANSWER) if fallback_ok else Raw({"choices": []}))
    response = httpx.post(f"{model_server.url}/api/chat", json={"message": QUESTION}, timeout=30)
    assert response.status_code == 200, response.text
    turn = response.json()
    messages = stored(model_server, turn)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    if fallback_ok:
        assert turn["model"] == "fallback" and turn["error"] is None
        assert messages[1]["status"] == "ok"
    else:
        assert turn["error"] == "model_unavailable" and "Oups" in turn["response"]
        assert "choices" not in turn["response"] and messages[1]["status"] == "failed"


@pytest.mark.parametrize("fallback_ok", [True, False])
def test_string_delta_on_the_stream(model_server, fake: FakeChat, fallback_ok: bool):
    fake.default("expert", RawStream(STRING_DELTA, done=True))
    fake.default("fallback", Reply(ANSWER) if fallback_ok else RawStream(STRING_DELTA))
    response = httpx.post(
        f"{model_server.url}/api/chat/stream", json={"message": QUESTION}, timeout=30
    )
    events = read_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done", names
    done = events[-1][1]
    messages = stored(model_server, done)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    if fallback_ok:
        assert "error" not in names and done["model"] == "fallback"
    else:
        error = dict(events)["error"]
        assert error["code"] == "model_unavailable" and "Oups" in error["message"]
        assert messages[1]["status"] == "failed"


def test_keepalive_comments_while_the_model_is_silent(model_server, fake: FakeChat):
    fake.default("expert", Hang(1.5, then=Reply(ANSWER)))
    response = httpx.post(
        f"{model_server.url}/api/chat/stream", json={"message": QUESTION}, timeout=30
    )
    assert response.text.count(": attente") >= 3  # one every 0.2 s while she waited
    assert read_events(response)[-1][0] == "done"


def test_hanging_primary_on_api_chat_hands_over_to_the_fallback(
    serve, api_settings, fake: FakeChat
):
    """A primary silent past the first-token deadline leaves the rest of the turn's time to
    the fallback: /api/chat answers with the fallback's text, not the apology."""
    settings = api_settings(
        openrouter_api_key="sk-test-key",
        llm_base_url=fake.url,
        orchestrator_model="orch",
        expert_model="expert",
        fallback_model="fallback",
        llm_retries=1,
        llm_answer_start_timeout=1.0,
        turn_deadline=20.0,
    )
    fake.default("expert", Hang(60))
    fake.default("fallback", Reply(ANSWER))
    with serve(settings) as server:
        response = httpx.post(f"{server.url}/api/chat", json={"message": QUESTION}, timeout=60)
        assert response.status_code == 200, response.text
        turn = response.json()
        assert len(fake.for_model("fallback")) == 1
        assert turn["error"] is None and turn["model"] == "fallback"
        assert turn["response"] == ANSWER
        # The silent primary was asked once, not retried: a missed first token is final.
        assert len(fake.for_model("expert")) == 1
        assert stored(server, turn)[1]["status"] == "ok"
