"""Reaching the visitor where she is, over a real server and a real SMTP server: her email, the
team's reply by email with a signed link that reopens the conversation, the team told of each
new hand-off; her deleting the conversation."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from copines.privacy import reopen_token
from copines.store import create_store
from tests.admin.conftest import AUTHOR, CSRF_RE, TOKEN, sign_in

ASK_HUMAN = "Je voudrais parler à une personne de l'équipe, s'il te plaît."
TEAM = "equipe@agence.test"
VISITOR = "marie@exemple.fr"


@pytest.fixture
def reach_settings(api_settings, smtp_server):
    return api_settings(
        smtp_url=smtp_server.url,
        team_email=TEAM,
        admin_token=TOKEN,
        site_url="https://lagencedescopines.test/contact",
        console_url="https://chat.lagencedescopines.test/admin",
    )


def _link_of(body: str) -> str:
    return re.search(r"https://lagencedescopines\.test/contact#copines=(\S+)", body).group(1)


async def _open_escalations(settings) -> list:
    async with create_store(settings) as store:
        return await store.list_escalations("open")


async def test_a_hand_off_emails_the_team_once_per_open_escalation(
    serve, reach_settings, smtp_server
):
    with serve(reach_settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        turn = http.post("/api/chat", json={"message": ASK_HUMAN}).json()
        assert turn["escalated"] and turn["agent_name"] == "Lou"
        assert turn["label"] == "assistante"
        [mail] = smtp_server.inbox.wait_for(TEAM)
        assert mail["Subject"].startswith("Escalade #")
        body = mail.get_content()
        assert ASK_HUMAN in body
        assert "https://chat.lagencedescopines.test/admin/escalations/" in body

        # She asks again in the same conversation: the open escalation is updated, the team is
        # not emailed a second time.
        again = http.post(
            "/api/chat",
            json={
                "message": "Toujours personne ? Je veux parler à une personne de l'équipe.",
                "conversation_id": turn["conversation_id"],
            },
            headers={"X-Conversation-Token": turn["token"]},
        ).json()
        assert again["escalated"]
        open_ones = [
            e
            for e in await _open_escalations(reach_settings)
            if e.conversation_id == turn["conversation_id"]
        ]
        assert len(open_ones) == 1 and open_ones[0].meta["handoffs"] == 2
        time.sleep(0.5)  # the email would have gone in the background by now
        assert len(smtp_server.inbox.to(TEAM)) == 1


async def test_the_team_reply_reaches_her_by_email_with_a_link_that_reopens_it(
    serve, reach_settings, smtp_server
):
    with serve(reach_settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        turn = http.post("/api/chat", json={"message": ASK_HUMAN}).json()
        cid, token = turn["conversation_id"], turn["token"]
        mine = {"X-Conversation-Token": token}
        bad = http.post(f"/api/conversations/{cid}/email", json={"email": "marie"}, headers=mine)
        assert bad.status_code == 422 and "adresse email" in bad.json()["detail"]
        stranger = http.post(f"/api/conversations/{cid}/email", json={"email": VISITOR})
        assert stranger.status_code == 404
        saved = http.post(f"/api/conversations/{cid}/email", json={"email": VISITOR}, headers=mine)
        assert saved.status_code == 204
        assert http.get(f"/api/conversations/{cid}", headers=mine).json()["email"] == VISITOR

        # The team answers from the console, signed with the name given at sign-in.
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as console:
            assert (await sign_in(console)).status_code == 303
            [escalation] = [
                e for e in await _open_escalations(reach_settings) if e.conversation_id == cid
            ]
            page = await console.get(f"/admin/escalations/{escalation.id}")
            csrf = CSRF_RE.search(page.text).group(1)
            reply = await console.post(
                f"/admin/conversations/{cid}/reply",
                data={
                    "csrf_token": csrf,
                    "content": "Bonjour Marie, on s'appelle jeudi ?",
                    "escalation_id": str(escalation.id),
                },
            )
            assert reply.status_code == 303
            assert "msg=replied-email" in reply.headers["location"]

        [mail] = smtp_server.inbox.wait_for(VISITOR)
        body = mail.get_content()
        assert "Bonjour Marie, on s'appelle jeudi ?" in body and AUTHOR in body
        link = _link_of(body)
        assert token not in body  # the visitor's own token never travels by email

        # The link's credential opens the conversation from any device...
        opened = http.get(f"/api/conversations/{cid}", headers={"X-Conversation-Token": link})
        assert opened.status_code == 200
        team = [m for m in opened.json()["messages"] if m["role"] == "team"]
        assert team[-1]["agent_name"] == AUTHOR and team[-1]["label"] == "équipe"
        follow = http.post(
            "/api/chat",
            json={"message": "Jeudi c'est parfait, merci !", "conversation_id": cid},
            headers={"X-Conversation-Token": link},
        )
        assert follow.status_code == 200
        # ...but only this one, untampered and unexpired.
        assert (
            http.get(
                f"/api/conversations/{cid}", headers={"X-Conversation-Token": link[:-2] + "xx"}
            ).status_code
            == 404
        )
        old = reopen_token(reach_settings, cid, now=time.time() - 40 * 86400)
        assert (
            http.get(f"/api/conversations/{cid}", headers={"X-Conversation-Token": old}).status_code
            == 404
        )
        other = http.post("/api/chat", json={"message": "Bonjour"}).json()["conversation_id"]
        assert (
            http.get(
                f"/api/conversations/{other}", headers={"X-Conversation-Token": link}
            ).status_code
            == 404
        )

        # She deletes the conversation: everything goes, and the link opens nothing.
        assert http.delete(f"/api/conversations/{cid}").status_code == 404  # no token
        assert http.delete(f"/api/conversations/{cid}", headers=mine).status_code == 204
        assert http.get(f"/api/conversations/{cid}", headers=mine).status_code == 404
        assert (
            http.get(
                f"/api/conversations/{cid}", headers={"X-Conversation-Token": link}
            ).status_code
            == 404
        )
        assert not [e for e in await _open_escalations(reach_settings) if e.conversation_id == cid]


def test_the_favicon_is_served(client: httpx.Client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
