"""The n8n path end to end: the real n8n (deploy/n8n/install.sh) serving deploy/n8n/workflow.json
in front of a real copines server; what the widget's browser and the team would see."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from copines.config import Settings
from tests.api.live import LiveServer, live_server
from tests.conftest import make_settings
from tests.deploy.n8n_live import WEBHOOK_PATH, N8n, require_n8n

ORIGIN = "http://agency.localhost:8080"
OTHER_ORIGIN = "http://elsewhere.localhost:8080"
PER_MINUTE = 3


class Notifications(ThreadingHTTPServer):
    """The team's notification endpoint (a Slack-like webhook): keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length") or 0)
                outer.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/notify"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def copines(tmp_path_factory, sample_knowledge_sqlite: Path, embedder) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("n8n-copines")
    shutil.copy(sample_knowledge_sqlite, folder / "base.db")
    settings: Settings = make_settings(
        folder,
        database_url=f"sqlite:///{folder / 'base.db'}",
        n8n_addresses=["127.0.0.1/32"],
        allowed_origins=[ORIGIN],
        rate_per_minute=PER_MINUTE,
    )
    with live_server(settings, embedder=embedder) as server:
        yield server


@pytest.fixture(scope="module")
def notifications() -> Iterator[Notifications]:
    server = Notifications()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def n8n(tmp_path_factory, copines: LiveServer, notifications: Notifications) -> Iterator[N8n]:
    binary = require_n8n()
    instance = N8n(
        binary,
        tmp_path_factory.mktemp("n8n"),
        {"COPINES_URL": copines.url, "COPINES_ESCALATION_NOTIFY_URL": notifications.url},
    )
    instance.import_workflow(ORIGIN)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def send(n8n: N8n, body: object, visitor: str, **headers: str) -> httpx.Response:
    """What the proxy in front of n8n passes on: the visitor's address in X-Forwarded-For."""
    return httpx.post(
        f"{n8n.url}{WEBHOOK_PATH}",
        content=json.dumps(body),
        headers={"content-type": "application/json", "x-forwarded-for": visitor, **headers},
        timeout=60,
    )


def test_a_message_gets_copines_answer_unchanged(n8n: N8n, copines: LiveServer) -> None:
    answer = send(n8n, {"message": "Comment créer un tunnel de vente ?"}, "203.0.113.10")
    assert answer.status_code == 200, n8n.log_tail()
    assert answer.headers["content-type"].startswith("application/json")
    turn = answer.json()
    assert turn["agent"] == "audrey" and turn["response"] and turn["token"]
    # The same conversation, read from copines directly: the answer n8n returned is the one stored.
    stored = httpx.get(
        f"{copines.url}/api/conversations/{turn['conversation_id']}",
        headers={"X-Conversation-Token": turn["token"]},
    ).json()
    assert [m["content"] for m in stored["messages"]][-1] == turn["response"]
    # A follow-up through n8n with the conversation's token continues that conversation.
    follow = send(
        n8n,
        {"message": "et ensuite ?", "conversation_id": turn["conversation_id"]},
        "203.0.113.10",
        **{"x-conversation-token": turn["token"]},
    )
    assert follow.status_code == 200, follow.text
    assert follow.json()["conversation_id"] == turn["conversation_id"]


def test_an_empty_message_gets_copines_own_refusal(n8n: N8n, copines: LiveServer) -> None:
    through = send(n8n, {"message": "   "}, "203.0.113.11")
    direct = httpx.post(f"{copines.url}/api/chat", json={"message": "   "})
    assert through.status_code == direct.status_code == 422
    assert through.json() == direct.json()


def test_the_rate_limit_is_per_visitor_with_retry_after(n8n: N8n) -> None:
    statuses = [
        send(n8n, {"message": f"Question {i} sur Kajabi ?"}, "198.51.100.7").status_code
        for i in range(PER_MINUTE)
    ]
    assert statuses == [200] * PER_MINUTE
    refused = send(n8n, {"message": "Encore une question ?"}, "198.51.100.7")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["detail"]
    # Another visitor behind the same n8n keeps her own allowance.
    other = send(n8n, {"message": "Comment faire un reel ?"}, "198.51.100.8")
    assert other.status_code == 200, other.text


def test_cors_preflight_answers_the_allowed_origin_only(n8n: N8n) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{n8n.url}{WEBHOOK_PATH}",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )

    allowed = preflight(ORIGIN)
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    refused = preflight(OTHER_ORIGIN)
    assert refused.headers.get("access-control-allow-origin") != OTHER_ORIGIN
    # The answer itself carries the header for the allowed origin.
    answer = send(n8n, {"message": "Bonjour"}, "203.0.113.12", origin=ORIGIN)
    assert answer.headers["access-control-allow-origin"] == ORIGIN


def test_an_escalation_notifies_the_team(n8n: N8n, notifications: Notifications) -> None:
    answer = send(n8n, {"message": "Je veux parler à une personne de l'équipe"}, "203.0.113.13")
    assert answer.status_code == 200
    assert answer.json()["escalated"] is True
    texts = [item.get("text", "") for item in notifications.received]
    assert any("parler à une personne" in text for text in texts), texts


def test_copines_unreachable_gives_a_clear_503(tmp_path_factory, copines: LiveServer) -> None:
    binary = require_n8n()
    instance = N8n(
        binary, tmp_path_factory.mktemp("n8n-down"), {"COPINES_URL": "http://127.0.0.1:9"}
    )
    instance.import_workflow(ORIGIN)
    instance.start()
    try:
        answer = send(instance, {"message": "Bonjour ?"}, "203.0.113.14")
        assert answer.status_code == 503
        assert answer.json()["code"] == "upstream_unavailable"
        assert answer.headers["retry-after"]
    finally:
        instance.stop()
