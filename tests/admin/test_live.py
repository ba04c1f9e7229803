"""End to end on a real server: a visitor escalates, the team answers from the console, the
visitor's conversation shows the answer, and the handled hand-off does not come back."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.admin.conftest import TOKEN
from tests.api.live import LiveServer, live_server
from tests.conftest import make_settings

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ASK_HUMAN = "Je voudrais parler à une personne de l'équipe s'il vous plaît"
TEAM_ANSWER = "Bonjour ! Ici Léa de l'agence : je t'appelle demain à 10 h pour en parler."


@pytest.fixture
def server(tmp_path: Path, sample_knowledge_sqlite: Path, embedder) -> Iterator[LiveServer]:
    db = tmp_path / "live.db"
    shutil.copy(sample_knowledge_sqlite, db)
    settings = make_settings(tmp_path, database_url=f"sqlite:///{db}", admin_token=TOKEN)
    with live_server(settings, embedder=embedder) as running:
        yield running


def console_login(http: httpx.Client) -> None:
    page = http.get("/admin/login")
    csrf = CSRF_RE.search(page.text).group(1)
    response = http.post("/admin/login", data={"token": TOKEN, "csrf_token": csrf})
    assert response.status_code == 303


def team_reply(http: httpx.Client, escalation_id: int, conversation_id: str, text: str) -> None:
    page = http.get(f"/admin/escalations/{escalation_id}")
    csrf = CSRF_RE.search(page.text).group(1)
    response = http.post(
        f"/admin/conversations/{conversation_id}/reply",
        data={"csrf_token": csrf, "content": text, "escalation_id": escalation_id, "handled": "1"},
    )
    assert response.status_code == 303


def escalate_and_answer(visitor: httpx.Client, team: httpx.Client) -> tuple[str, dict, int]:
    """The visitor asks for a human; the team answers from the console and marks it handled."""
    first = visitor.post("/api/chat", json={"message": ASK_HUMAN}).json()
    assert first["escalated"] is True
    conversation_id = first["conversation_id"]
    headers = {"X-Conversation-Token": first["token"]}
    console_login(team)
    open_escalations = team.get("/admin/api/escalations").json()
    assert [e["conversation_id"] for e in open_escalations] == [conversation_id]
    escalation_id = open_escalations[0]["id"]
    assert (
        "Je voudrais parler à une personne de l&#39;équipe" in team.get("/admin/escalations").text
    )
    seen = visitor.get(f"/api/conversations/{conversation_id}", headers=headers).json()
    team_reply(team, escalation_id, conversation_id, TEAM_ANSWER)
    return conversation_id, headers, seen["messages"][-1]["id"]


def test_team_reply_reaches_the_visitor(server):
    with (
        httpx.Client(base_url=server.url, timeout=60) as visitor,
        httpx.Client(base_url=server.url, timeout=60) as team,
    ):
        conversation_id, headers, last_id = escalate_and_answer(visitor, team)
        # The widget polls with ?after=<last id>: the team's message comes through.
        news = visitor.get(
            f"/api/conversations/{conversation_id}", params={"after": last_id}, headers=headers
        ).json()["messages"]
        assert [(m["role"], m["content"], m["agent_name"]) for m in news] == [
            ("team", TEAM_ANSWER, "L'équipe")
        ]
        assert team.get("/admin/api/escalations").json() == []
        statuses = team.get("/admin/api/escalations", params={"status": "all"}).json()
        assert [e["status"] for e in statuses] == ["handled"]
        # A question after the hand-off goes to the expert, and the console shows it all.
        turn = visitor.post(
            "/api/chat",
            json={
                "message": "Et sinon, comment créer ma première séquence d'emails ?",
                "conversation_id": conversation_id,
            },
            headers=headers,
        ).json()
        assert turn["escalated"] is False and turn["agent"] == "audrey"
        page = team.get(f"/admin/conversations/{conversation_id}").text
        assert 'class="msg team"' in page and "je t&#39;appelle demain" in page
        assert "séquence d&#39;emails" in page


def test_handled_escalation_does_not_loop(server):
    with (
        httpx.Client(base_url=server.url, timeout=60) as visitor,
        httpx.Client(base_url=server.url, timeout=60) as team,
    ):
        conversation_id, headers, _ = escalate_and_answer(visitor, team)
        for message in ("Merci beaucoup, à demain !", "Super, merci pour votre réponse"):
            turn = visitor.post(
                "/api/chat",
                json={"message": message, "conversation_id": conversation_id},
                headers=headers,
            ).json()
            assert turn["escalated"] is False, (message, turn["agent"])
        assert team.get("/admin/api/escalations").json() == []
