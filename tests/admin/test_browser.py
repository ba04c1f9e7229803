"""In Chromium: the team's reply reaches the visitor's open widget; screenshots of each page."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from copines.conversations import start_conversation
from copines.deps import Deps
from copines.store.base import Escalation, Message
from tests.admin.conftest import AUTHOR, TOKEN, backdate, db_path, seed
from tests.admin.test_knowledge import _seed_gaps
from tests.admin.test_live import ASK_HUMAN, TEAM_ANSWER
from tests.api.live import LiveServer, live_server
from tests.axe import axe_violations, blocking
from tests.conftest import ROOT, make_settings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--lang=fr-FR",
]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM}"
        if os.environ.get("CI"):
            pytest.fail(message)
        print(f"skipping: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def settings(tmp_path: Path, sample_knowledge_sqlite: Path):
    db = tmp_path / "browser.db"
    shutil.copy(sample_knowledge_sqlite, db)
    return make_settings(tmp_path, database_url=f"sqlite:///{db}", admin_token=TOKEN)


@pytest.fixture
def server(settings, embedder) -> Iterator[LiveServer]:
    with live_server(settings, embedder=embedder) as running:
        yield running


def sign_in(page, url: str) -> None:
    page.goto(f"{url}/admin/escalations")
    assert "/admin/login" in page.url  # no session yet
    page.fill("#name", AUTHOR)
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/admin/escalations")


def test_team_reply_reaches_the_open_widget(browser, server):
    visitor = browser.new_context()
    team = browser.new_context()
    try:
        widget = visitor.new_page()
        widget.goto(server.url + "/")
        widget.click("copines-chat .launcher")
        widget.fill("#copines-input", ASK_HUMAN)
        widget.press("#copines-input", "Enter")
        widget.locator("copines-chat .handoff").wait_for(timeout=30_000)

        console = team.new_page()
        sign_in(console, server.url)
        console.click("text=Ouvrir et répondre")
        console.fill("textarea[name=content]", TEAM_ANSWER)
        console.click("form.reply button[type=submit]")
        console.wait_for_url("**msg=replied#m*")
        assert "Réponse envoyée" in console.content()
        # The page stays at the new message.
        anchor = console.evaluate("location.hash")
        assert anchor.startswith("#m")
        assert console.locator(anchor).text_content().find(TEAM_ANSWER) >= 0
        assert (
            console.evaluate(f"document.querySelector('{anchor}').getBoundingClientRect().top")
            < 900
        )

        # The widget is still open: its poll brings the reply, signed with her name.
        reply = widget.locator("copines-chat .msg", has_text=TEAM_ANSWER)
        reply.wait_for(timeout=15_000)
        assert reply.locator(".author .name").inner_text() == AUTHOR

        # Opening the page again (the visitor comes back later) shows it too.
        again = visitor.new_page()
        again.goto(server.url + "/")
        again.click("copines-chat .launcher")
        again.locator("copines-chat .msg", has_text=TEAM_ANSWER).wait_for(timeout=15_000)
    finally:
        visitor.close()
        team.close()


async def _seed_for_pictures(settings, embedder) -> None:
    deps = await Deps.create(settings, embedder=embedder)
    try:
        now = datetime.now(UTC)
        for days_ago in (6, 4, 3, 1, 0):
            seeded = await seed(deps)
            if days_ago >= 3:  # older hand-offs were answered by the team
                for escalation_id in seeded.escalations.values():
                    escalation = await deps.store.get_escalation(escalation_id)
                    await deps.store.add_message(
                        Message(escalation.conversation_id, "team", TEAM_ANSWER)
                    )
                    await deps.store.set_escalation_status(escalation_id, "handled")
            if days_ago:
                ids = []
                for conversation in seeded.conversations.values():
                    ids += [m.id for m in await deps.store.get_messages(conversation)]
                backdate(
                    db_path(deps),
                    ids,
                    now - timedelta(days=days_ago),
                )
        await _seed_gaps(deps)
        # An angry, urgent hand-off, asked twice, from a visitor who left her email.
        angry, _ = await start_conversation(deps.store)
        await deps.store.set_conversation_email(angry.id, "marie@exemple.fr")
        question = (
            "J'ai été débitée deux fois et je n'ai plus accès à la formation, c'est urgent !!"
        )
        await deps.store.add_message(
            Message(angry.id, "user", question, meta={"sentiment": "negative"})
        )
        for reason in ("problème de paiement", "accès perdu"):
            answer = await deps.store.add_message(
                Message(
                    angry.id,
                    "assistant",
                    "Je transmets à l'équipe.",
                    agent="escalate",
                    meta={"sentiment": "negative"},
                )
            )
            await deps.store.add_escalation(
                Escalation(
                    angry.id,
                    reason,
                    primary_need=reason,
                    message_id=answer,
                    brief=f"Motif : {reason}.\nMessage : « {question} »",
                )
            )
    finally:
        await deps.aclose()


SHOTS = [
    ("escalations", "/admin/escalations"),
    ("privacy", None),  # a search by email (a form posted, never a URL)
    ("escalation", None),  # the newest open escalation
    ("conversations", "/admin/conversations"),
    ("conversation", None),  # its conversation, details open
    ("knowledge", "/admin/knowledge?expert=carole&q=Combien+de+reels+par+semaine+%3F"),
    ("gaps", "/admin/gaps"),
    ("sources", "/admin/sources"),
    ("analytics", "/admin/analytics?since={since}"),
]


def test_screenshots(browser, settings, embedder, tmp_path):
    # Playwright's sync API holds this thread's event loop: seed from another thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _seed_for_pictures(settings, embedder)).result()
    # The pictures in docs/ change only on demand: UPDATE_SCREENSHOTS=1 pytest tests/admin
    docs = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    since = (datetime.now(UTC).date() - timedelta(days=7)).isoformat()
    with live_server(settings, embedder=embedder) as server:
        # Real turns on top of the seeded ones, answered offline by the running service.
        with httpx.Client(base_url=server.url, timeout=60) as visitor:
            for message in (
                ASK_HUMAN,
                "Bonjour, pouvez-vous m'aider à remplir ma déclaration d'impôts ?",
                "Comment créer ma première séquence d'emails de bienvenue ?",
            ):
                assert visitor.post("/api/chat", json={"message": message}).status_code == 200
        # axe-core is injected by the test: the console's CSP would refuse it otherwise.
        context = browser.new_context(
            viewport={"width": 1280, "height": 900},
            locale="fr-FR",
            timezone_id="UTC",
            bypass_csp=True,
        )
        try:
            page = context.new_page()
            page.goto(f"{server.url}/admin/login")
            page.screenshot(path=str(docs / "admin-login.png"))
            assert blocking(axe_violations(page)) == []
            sign_in(page, server.url)
            for name, path in SHOTS:
                if name == "escalation":
                    page.goto(f"{server.url}/admin/escalations")
                    page.click("text=Ouvrir et répondre >> nth=0")
                elif name == "privacy":
                    page.goto(f"{server.url}/admin/privacy")
                    page.fill("#email", "marie@exemple.fr")
                    page.click("text=Chercher")
                    page.wait_for_load_state()
                    assert "marie" not in page.url
                elif name == "conversation":
                    page.click("a[href^='/admin/conversations/']")
                    page.wait_for_load_state()
                    page.locator("details.turn-details").evaluate_all(
                        "els => els.forEach(e => e.open = true)"
                    )
                else:
                    page.goto(server.url + path.format(since=since))
                page.screenshot(path=str(docs / f"admin-{name}.png"), full_page=True)
                problems = blocking(axe_violations(page))
                assert problems == [], f"{name}: " + "\n".join(problems)
            # A tablet in portrait: the layout folds to one column.
            tablet = browser.new_context(
                locale="fr-FR",
                viewport={"width": 820, "height": 1180},
                storage_state=context.storage_state(),
            )
            try:
                narrow = tablet.new_page()
                narrow.goto(f"{server.url}/admin/analytics?since={since}")
                narrow.screenshot(path=str(docs / "admin-analytics-tablet.png"), full_page=True)
                width = narrow.evaluate("document.documentElement.scrollWidth")
                assert width <= 820  # nothing overflows sideways
            finally:
                tablet.close()
        finally:
            context.close()
