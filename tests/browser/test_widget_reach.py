"""The widget in Chromium, as visitors expect it: a button to reach the team, her email for the
team's reply, the reply's link reopening the conversation in another browser, the closed
widget's badge and tab title, a new conversation, deletion, the length counter, the thumbs-down
comment, linked sources, dark mode; axe-core finds no serious or critical problem."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from copines.store import create_store
from copines.store.base import Message
from tests.admin.conftest import AUTHOR, CSRF_RE, TOKEN
from tests.api.live import LiveServer, live_server
from tests.axe import axe_violations, blocking
from tests.browser.conftest import guard_network
from tests.browser.test_widget import DOCS, QUESTION, ask, last_answer

pytestmark = pytest.mark.browser

TEAM_MAIL = "equipe@agence.test"
VISITOR = "marie@exemple.fr"
REPLY = "Bonjour Marie, c'est Sophie ! On peut s'appeler jeudi à 10 h ?"
SHADOW = "document.querySelector('copines-chat').shadowRoot"


def in_store(settings, work: Callable[[Any], Any]) -> Any:
    """Run `work(store)` on the server's database, from a thread of its own (Playwright's sync
    API owns this thread's event loop)."""

    async def job() -> Any:
        async with create_store(settings) as store:
            return await work(store)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job()).result(30)


def conversation_of(page) -> dict:
    return page.evaluate(
        "() => JSON.parse(Object.entries(localStorage)"
        ".find(([k]) => k.startsWith('copines:conversation:'))?.[1] || 'null')"
    )


def team_reply(server: LiveServer, conversation_id: str, text: str = REPLY) -> httpx.Response:
    """The team answers from the console (signed in as « Sophie »)."""
    with httpx.Client(base_url=server.url, timeout=30) as console:
        login = console.get("/admin/login")
        csrf = CSRF_RE.search(login.text).group(1)
        signed = console.post(
            "/admin/login", data={"token": TOKEN, "csrf_token": csrf, "name": AUTHOR}
        )
        assert signed.status_code == 303
        page = console.get(f"/admin/conversations/{conversation_id}")
        csrf = CSRF_RE.search(page.text).group(1)
        return console.post(
            f"/admin/conversations/{conversation_id}/reply",
            data={"csrf_token": csrf, "content": text},
        )


@pytest.fixture
def mail_site(site_settings, embedder, smtp_server, host_site) -> Iterator[tuple]:
    """The service with email on; a reply's link leads to the host site's page."""
    settings = site_settings(
        smtp_url=smtp_server.url,
        team_email=TEAM_MAIL,
        admin_token=TOKEN,
        site_url=f"{host_site.origin}/cabinet.html",
    )
    with live_server(settings, embedder=embedder) as server:
        yield server, settings


def embed(page, host_site, server: LiveServer, attrs: str = "") -> None:
    html = (
        "<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>Mon cabinet</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        "<body><main><h1>Mon cabinet</h1><p>Bienvenue.</p></main>"
        f"<script src='{server.url}/widget.js' defer {attrs}></script></body></html>"
    )
    page.goto(host_site.show(html))


def test_the_team_reply_reaches_her_by_email_and_its_link_reopens_the_conversation(
    browser, page, mail_site, smtp_server, host_site
):
    server, _ = mail_site
    embed(page, host_site, server)
    page.locator("copines-chat .launcher").click()
    assert page.locator("copines-chat .privacy a").get_attribute("href").startswith("https://")

    # One button asks for a person; the assistant hands over and offers the email field.
    page.get_by_role("button", name="Parler à l'équipe").click()
    answer = last_answer(page)
    answer.locator(".handoff").wait_for(timeout=20_000)
    assert answer.locator(".author .name").text_content() == "Lou"
    assert answer.locator(".author .label").text_content() == "assistante"
    [team_mail] = smtp_server.inbox.wait_for(TEAM_MAIL)
    assert "Escalade #" in team_mail["Subject"]

    box = page.locator("copines-chat .emailbox")
    assert box.is_visible()
    assert "te prévenir de nos réponses" in box.text_content()
    box.get_by_label("Ton email").fill(VISITOR)
    box.get_by_role("button", name="Enregistrer").click()
    page.locator("copines-chat .notice", has_text=VISITOR).wait_for()
    assert not box.is_visible()  # out of the way once saved

    # She closes the widget; the team answers: the badge and the tab title say so within 5 s.
    page.locator("copines-chat .close").click()
    conversation = conversation_of(page)
    reply = team_reply(server, conversation["id"])
    assert "msg=replied-email" in reply.headers["location"]
    page.locator("copines-chat .badge", has_text="1").wait_for(timeout=5_000)
    assert page.title().startswith("(1) ")
    launcher = page.locator("copines-chat .launcher")
    assert "1 nouveau message" in launcher.get_attribute("aria-label")
    launcher.click()
    assert page.title() == "Mon cabinet"
    mine = page.locator("copines-chat .msg.team", has_text="jeudi à 10 h")
    assert mine.locator(".author .name").text_content() == AUTHOR
    assert mine.locator(".author .label").text_content() == "équipe"
    assert launcher.get_attribute("aria-label") == "Fermer le chat"

    # The email carries the reply and a link that reopens the conversation on another device.
    [mail] = smtp_server.inbox.wait_for(VISITOR)
    body = mail.get_content()
    assert REPLY in body and AUTHOR in body
    link = re.search(r"(http://\S+/cabinet\.html#copines=\S+)", body).group(1)
    elsewhere = browser.new_context(viewport={"width": 390, "height": 844}, locale="fr-FR")
    outside = guard_network(elsewhere)
    try:
        phone = elsewhere.new_page()
        phone.goto(link)
        # A browser without a conversation shows whose it is before opening it.
        ask_box = phone.locator("copines-chat .confirm.linkask")
        ask_box.locator("li", has_text="jeudi à 10 h").wait_for(timeout=10_000)
        assert VISITOR in ask_box.text_content()
        ask_box.get_by_role("button", name="Oui, c'est la mienne : l'ouvrir").click()
        phone.locator("copines-chat .msg.team", has_text="jeudi à 10 h").wait_for(timeout=10_000)
        assert "copines=" not in phone.url  # the credential left the address bar
        ask(phone, "Jeudi 10 h c'est parfait, merci !")
        phone.locator("copines-chat .msg.user", has_text="Jeudi 10 h").wait_for()
        last_answer(phone).locator(".tools").wait_for(timeout=20_000)

        def stored(store):
            return store.get_messages(conversation["id"])

        messages = in_store(mail_site[1], stored)
        assert any(m.role == "user" and "Jeudi 10 h" in m.content for m in messages)
    finally:
        elsewhere.close()
    assert not outside, outside


def link_to(host_site, settings, conversation_id: str, n: int) -> str:
    """A reply's link to `conversation_id`, as the email carries it (`n` makes each URL new,
    so that the page loads again instead of only changing its fragment)."""
    from copines.privacy import load_keys, reopen_token

    keys = in_store(settings, lambda store: load_keys(store, settings))
    token = reopen_token(keys.link, conversation_id, days=30)
    return f"{host_site.origin}/cabinet.html?n={n}#copines={token}"


def test_a_reply_link_keeps_her_token_and_never_swaps_her_conversation_unasked(
    page, mail_site, host_site
):
    server, settings = mail_site
    embed(page, host_site, server)
    page.locator("copines-chat .launcher").click()
    ask(page, "Ma question à moi sur Instagram")
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    mine = conversation_of(page)
    assert "." not in mine["token"]  # her own, permanent token

    # Her own reply's link: the conversation stays, and so does her permanent token.
    page.goto(link_to(host_site, settings, mine["id"], 1))
    page.locator("copines-chat .notice", has_text="Voici ta conversation").wait_for()
    assert conversation_of(page)["token"] == mine["token"]
    assert not page.locator("copines-chat .confirm.linkask").is_visible()
    page.locator("copines-chat .msg.user", has_text="Ma question à moi").wait_for()

    # Someone else's genuine link (his own conversation): shown first, opened only if she says.
    with httpx.Client(base_url=server.url, timeout=30) as http:
        other = http.post("/api/chat", json={"message": "Je suis Paul, mon tunnel plante"}).json()
        saved = http.post(
            f"/api/conversations/{other['conversation_id']}/email",
            json={"email": "paul@pirate.test"},
            headers={"X-Conversation-Token": other["token"]},
        )
        assert saved.status_code == 204
    page.goto(link_to(host_site, settings, other["conversation_id"], 2))
    box = page.locator("copines-chat .confirm.linkask")
    box.locator("li", has_text="Je suis Paul").wait_for(timeout=10_000)
    assert "autre conversation" in box.text_content()
    assert "paul@pirate.test" in box.text_content()
    assert conversation_of(page)["id"] == mine["id"]  # nothing switched yet
    box.get_by_role("button", name="Non, garder la mienne").click()
    assert not box.is_visible()
    assert conversation_of(page) == mine
    page.locator("copines-chat .msg.user", has_text="Ma question à moi").wait_for()
    assert not page.locator("copines-chat .msg", has_text="Je suis Paul").count()

    # Opened anyway: her conversation is kept aside, one click away.
    page.goto(link_to(host_site, settings, other["conversation_id"], 3))
    box.locator("li", has_text="Je suis Paul").wait_for(timeout=10_000)
    box.get_by_role("button", name="Oui, c'est la mienne : l'ouvrir").click()
    page.locator("copines-chat .msg.user", has_text="Je suis Paul").wait_for()
    assert conversation_of(page)["id"] == other["conversation_id"]
    page.get_by_role("button", name="Revenir à ma conversation précédente").click()
    page.locator("copines-chat .msg.user", has_text="Ma question à moi").wait_for()
    assert conversation_of(page) == mine
    assert not page.locator("copines-chat .msg", has_text="Je suis Paul").count()


def test_a_new_conversation_then_deleting_it(page, site, site_settings):
    page.goto(site.url + "/")
    page.locator("copines-chat .launcher").click()
    ask(page, QUESTION)
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    first = conversation_of(page)["id"]
    # Each message shows when it was written.
    assert page.locator("copines-chat .msg.user time").first.get_attribute("datetime")
    assert re.fullmatch(r"\d\d:\d\d", last_answer(page).locator("time").text_content())

    page.get_by_role("button", name="Nouvelle conversation").click()
    assert page.locator("copines-chat .msg:not(.greeting)").count() == 0
    assert conversation_of(page) is None
    ask(page, "Comment écrire un bon hook pour un reel ?")
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    second = conversation_of(page)["id"]
    assert second != first

    page.get_by_role("button", name="Supprimer cette conversation").click()
    page.get_by_role("button", name="Oui, supprimer").click()
    page.locator("copines-chat .notice", has_text="supprimée").wait_for()
    assert conversation_of(page) is None
    assert page.locator("copines-chat .msg:not(.greeting)").count() == 0

    def both(store):
        async def read():
            return [await store.get_conversation(first), await store.get_conversation(second)]

        return read()

    kept, gone = in_store(site_settings(), both)
    assert kept is not None and gone is None


def test_the_length_limit_is_shown_not_silently_applied(page, site):
    page.goto(site.url + "/")
    page.locator("copines-chat .launcher").click()
    box = page.locator("copines-chat .composer textarea")
    counter = page.locator("copines-chat .counter")
    assert not counter.is_visible()
    long = ("Je prépare mon lancement et j'ai plein de questions. " * 50)[:2600]
    box.fill(long)
    assert box.input_value() == long  # nothing cut
    assert counter.is_visible() and "trop long de 600 caractères" in counter.text_content()
    assert page.locator("copines-chat .send").is_disabled()
    page.keyboard.press("Enter")
    assert page.locator("copines-chat .msg.user").count() == 0
    box.fill(long[:1900])
    assert counter.text_content() == "1900 / 2000"
    assert page.locator("copines-chat .send").is_enabled()


def test_a_thumbs_down_takes_a_comment_that_the_console_shows(page, site_settings, embedder):
    settings = site_settings(admin_token=TOKEN)
    with live_server(settings, embedder=embedder) as server:
        page.goto(server.url + "/")
        page.locator("copines-chat .launcher").click()
        ask(page, QUESTION)
        answer = last_answer(page)
        answer.locator(".tools").wait_for(timeout=20_000)
        answer.get_by_role("button", name="Cette réponse ne m'aide pas").click()
        answer.get_by_label("Dis-nous ce qui n'allait pas").fill("Trop général pour Kajabi")
        answer.get_by_role("button", name="Envoyer").click()
        answer.locator(".thanks", has_text="transmis").wait_for()
        conversation = conversation_of(page)["id"]
        with httpx.Client(base_url=server.url, timeout=30) as console:
            csrf = CSRF_RE.search(console.get("/admin/login").text).group(1)
            console.post("/admin/login", data={"token": TOKEN, "csrf_token": csrf, "name": "Ana"})
            shown = console.get(f"/admin/conversations/{conversation}").text
        assert "« Trop général pour Kajabi »" in shown


def test_sources_are_listed_once_and_linked_when_public(page, site, site_settings):
    page.goto(site.url + "/")
    page.locator("copines-chat .launcher").click()
    ask(page, QUESTION)
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    conversation = conversation_of(page)["id"]
    sources = [
        {
            "filename": "guide-kajabi.md",
            "title": "Guide Kajabi",
            "url": "https://exemple.fr/kajabi",
        },
        {
            "filename": "guide-kajabi.md",
            "title": "Guide Kajabi",
            "url": "https://exemple.fr/kajabi",
        },
        {"filename": "faq.md", "title": "FAQ de l'agence", "url": None},
        {"filename": "piege.md", "title": "Piège", "url": "javascript:alert(1)"},
    ]

    def add(store):
        return store.add_message(
            Message(
                conversation,
                "assistant",
                "Voici la marche à suivre.",
                agent="audrey",
                sources=sources,
            )
        )

    in_store(site_settings(), add)
    page.reload()
    if not page.locator("copines-chat .panel").is_visible():
        page.locator("copines-chat .launcher").click()
    answer = page.locator("copines-chat .msg.assistant", has_text="marche à suivre")
    answer.wait_for(timeout=10_000)
    items = answer.locator(".sources li")
    assert items.all_text_contents() == ["Guide Kajabi", "FAQ de l'agence", "Piège"]
    assert items.nth(0).locator("a").get_attribute("href") == "https://exemple.fr/kajabi"
    assert items.nth(1).locator("a").count() == 0
    assert items.nth(2).locator("a").count() == 0  # only http(s) links


def _full_conversation(page, server: LiveServer) -> None:
    """A question, a hand-off and the team's reply, in the open widget."""
    page.goto(server.url + "/")
    page.locator("copines-chat .launcher").click()
    ask(page, QUESTION)
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    page.get_by_role("button", name="Parler à l'équipe").click()
    last_answer(page).locator(".handoff").wait_for(timeout=20_000)
    box = page.locator("copines-chat .emailbox")
    box.get_by_label("Ton email").fill(VISITOR)
    box.get_by_role("button", name="Enregistrer").click()
    page.locator("copines-chat .notice", has_text=VISITOR).wait_for()
    team_reply(server, conversation_of(page)["id"])
    page.locator("copines-chat .msg.team").wait_for(timeout=10_000)
    page.mouse.move(0, 0)


@pytest.mark.parametrize(
    ("name", "viewport", "scheme"),
    [
        ("desktop", (1280, 800), "light"),
        ("mobile", (390, 844), "light"),
        ("dark", (1280, 800), "dark"),
    ],
)
def test_axe_finds_nothing_serious_and_screenshots(
    browser, site_settings, embedder, smtp_server, tmp_path, name, viewport, scheme
):
    settings = site_settings(admin_token=TOKEN, smtp_url=smtp_server.url)
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        locale="fr-FR",
        color_scheme=scheme,
        device_scale_factor=1,
        is_mobile=name == "mobile",
        has_touch=name == "mobile",
    )
    outside = guard_network(context)
    try:
        with live_server(settings, embedder=embedder) as server:
            page = context.new_page()
            _full_conversation(page, server)
            problems = blocking(axe_violations(page))
            assert problems == [], "\n".join(problems)
            if scheme == "dark":
                background = page.evaluate(
                    f"() => getComputedStyle({SHADOW}.querySelector('.panel')).backgroundColor"
                )
                assert background == "rgb(33, 28, 38)"
            icon = page.evaluate(
                f"() => getComputedStyle({SHADOW}.querySelector('.send svg')).fill"
            )
            assert icon == "rgb(255, 255, 255)"  # white icons on the deep pink
            target = tmp_path / f"widget-{name}.png"
            page.screenshot(path=str(target))
            if os.environ.get("SAVE_SCREENSHOTS"):
                target.replace(DOCS / f"widget-{name}.png")
    finally:
        context.close()
    assert not outside, outside


def test_a_failed_answer_offers_a_retry_that_sends_it_again(page, site, fake):
    from tests.fakes.openai_chat import Status

    fake.script("expert", Status(500))
    fake.script("fallback", Status(500))
    page.goto(site.url + "/")
    launcher = page.locator("copines-chat .launcher")
    closed_icon = launcher.locator("path").get_attribute("d")
    assert launcher.get_attribute("aria-label").startswith("Ouvrir le chat")
    launcher.click()
    # The open launcher says so, with another icon and label.
    assert launcher.locator("path").get_attribute("d") != closed_icon
    assert launcher.get_attribute("aria-label") == "Fermer le chat"
    assert launcher.get_attribute("aria-expanded") == "true"
    # The messages are a log region, not a broken list.
    assert page.locator("copines-chat [role=log]").evaluate("el => el.tagName") == "DIV"
    assert page.locator("copines-chat ol[role=log], copines-chat li.msg").count() == 0

    ask(page, QUESTION)
    retry = last_answer(page).get_by_role("button", name="Réessayer")
    retry.wait_for(timeout=20_000)
    assert "failed" in last_answer(page).locator(".bubble").get_attribute("class")
    retry.click()  # the model answers this time
    page.locator("copines-chat .msg.assistant", has_text="Premier email").wait_for(timeout=20_000)
    assert page.locator("copines-chat .msg.user", has_text=QUESTION).count() == 2
