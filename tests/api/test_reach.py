"""Reaching the visitor where she is, over a real server and a real SMTP server: her email, the
team's reply by email with a signed link that reopens the conversation, the team told of each
new hand-off; her deleting the conversation."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from copines.privacy import load_keys, reopen_token
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


async def _link_key(settings) -> bytes:
    async with create_store(settings) as store:
        return (await load_keys(store, settings)).link


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
        key = await _link_key(reach_settings)
        old = reopen_token(key, cid, days=30, now=time.time() - 40 * 86400)
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


@pytest.mark.parametrize(
    "address", ["a:b@c.fr", "x@[127.0.0.1].fr", "a)@b.fr", "marie@exemple..fr", "m\x00@exemple.fr"]
)
def test_an_address_smtp_would_refuse_gets_a_french_422_and_keeps_none(
    client: httpx.Client, address: str
):
    turn = client.post("/api/chat", json={"message": "Bonjour"}).json()
    cid, mine = turn["conversation_id"], {"X-Conversation-Token": turn["token"]}
    refused = client.post(f"/api/conversations/{cid}/email", json={"email": address}, headers=mine)
    assert refused.status_code == 422 and "adresse email" in refused.json()["detail"]
    assert client.get(f"/api/conversations/{cid}", headers=mine).json().get("email") is None
    kept = client.post(
        f"/api/conversations/{cid}/email", json={"email": "Marie@Exemple.FR"}, headers=mine
    )
    assert kept.status_code == 204


def test_the_favicon_is_served(client: httpx.Client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")


def test_a_password_never_crosses_the_network_without_tls(tmp_path, caplog, monkeypatch):
    """Over the network (not loopback), a server that offers no STARTTLS gets no password and
    no email: a man in the middle cannot strip STARTTLS to read it. On loopback it may. The
    server stays on loopback (tests reach nothing else); the mailer is told it is remote."""
    import asyncio

    import copines.mail
    from copines.mail import Mailer
    from tests.conftest import make_settings
    from tests.fakes.smtp import SMTPServer

    with SMTPServer(plain_auth=True) as server:
        url = f"smtp://copines:s3cret-pass@127.0.0.1:{server.port}"
        with monkeypatch.context() as remote:
            remote.setattr(copines.mail, "_loopback", lambda host: False)
            mailer = Mailer(make_settings(tmp_path, smtp_url=url), b"k" * 32)
            with caplog.at_level("ERROR", logger="copines.mail"):
                sent = asyncio.run(mailer.send(VISITOR, "Objet", "Texte"))
        assert not sent and server.passwords == [] and server.inbox.messages == []
        assert "COPINES_SMTP_URL" in caplog.text and "s3cret-pass" not in caplog.text
        mailer = Mailer(make_settings(tmp_path, smtp_url=url), b"k" * 32)
        assert asyncio.run(mailer.send(VISITOR, "Objet", "Texte"))
        assert server.passwords == [b"s3cret-pass"]


def test_an_smtp_url_of_another_scheme_is_refused_by_name(tmp_path):
    from pydantic import ValidationError

    from tests.conftest import make_settings

    with pytest.raises(ValidationError, match="COPINES_SMTP_URL"):
        make_settings(tmp_path, smtp_url="http://mail.exemple.fr")
    assert make_settings(tmp_path, smtp_url="").smtp_url is None


async def _console_reply(server, cid: str, text: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as console:
        assert (await sign_in(console)).status_code == 303
        page = await console.get(f"/admin/conversations/{cid}")
        csrf = CSRF_RE.search(page.text).group(1)
        return await console.post(
            f"/admin/conversations/{cid}/reply", data={"csrf_token": csrf, "content": text}
        )


async def _console_page(server, cid: str) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as console:
        assert (await sign_in(console)).status_code == 303
        return (await console.get(f"/admin/conversations/{cid}")).text


async def _email_state(settings, cid: str, timeout: float = 15.0) -> tuple[list, str]:
    """The team's messages of `cid`, once the email of the last one is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        async with create_store(settings) as store:
            team = [m for m in await store.get_messages(cid) if m.role == "team"]
        state = team[-1].meta.get("email") if team else None
        if state != "pending" or time.monotonic() > deadline:
            return team, state
        await asyncio.sleep(0.1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_with_smtp_down_the_reply_is_kept_once_and_the_console_shows_the_failure(
    serve, api_settings, caplog
):
    settings = api_settings(
        smtp_url=f"smtp://127.0.0.1:{_free_port()}",  # nothing listens there
        admin_token=TOKEN,
        smtp_attempts=3,
        smtp_retry_delay=0.05,
    )
    with serve(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        turn = http.post("/api/chat", json={"message": "Bonjour"}).json()
        cid, mine = turn["conversation_id"], {"X-Conversation-Token": turn["token"]}
        assert (
            http.post(
                f"/api/conversations/{cid}/email", json={"email": VISITOR}, headers=mine
            ).status_code
            == 204
        )
        reply = await _console_reply(server, cid, "On te rappelle demain.")
        assert reply.status_code == 303 and "msg=replied-email" in reply.headers["location"]
        team, state = await _email_state(settings, cid)
        assert state == "failed" and [m.content for m in team] == ["On te rappelle demain."]
        assert "email non envoyé" in await _console_page(server, cid)


async def test_a_stored_address_smtp_cannot_take_fails_the_email_not_the_reply(
    serve, reach_settings, smtp_server
):
    with serve(reach_settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        turn = http.post("/api/chat", json={"message": "Bonjour"}).json()
        cid = turn["conversation_id"]
        # An address kept before the stricter check (aiosmtplib raises ValueError on it).
        async with create_store(reach_settings) as store:
            await store.set_conversation_email(cid, "marie@exemple..fr")
        reply = await _console_reply(server, cid, "Voici notre réponse.")
        assert reply.status_code == 303
        team, state = await _email_state(reach_settings, cid)
        assert state == "failed" and [m.content for m in team] == ["Voici notre réponse."]
        assert smtp_server.inbox.messages == [] or all(
            "marie@exemple..fr" not in rcpt for _, rcpt, _ in smtp_server.inbox.messages
        )
        # A good address afterwards: sent, and shown as sent.
        async with create_store(reach_settings) as store:
            await store.set_conversation_email(cid, VISITOR)
        assert (await _console_reply(server, cid, "Et encore un mot.")).status_code == 303
        smtp_server.inbox.wait_for(VISITOR)
        _, state = await _email_state(reach_settings, cid)
        assert state == "sent" and "email envoyé" in await _console_page(server, cid)
