"""The widget in headless Chromium: streaming, expert, sources, history, keyboard, hostile CSS,
team replies, refusals; screenshots at desktop and mobile widths."""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from copines.store import create_store
from copines.store.base import Message
from tests.api.live import live_server
from tests.browser.conftest import guard_network
from tests.fakes.openai_chat import Reply

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
QUESTION = "Comment je crée une séquence d'emails de bienvenue pour mes nouvelles abonnées ?"

RECORD_STREAM = """() => {
  const root = document.querySelector('copines-chat').shadowRoot;
  window.__lengths = [];
  new MutationObserver(() => {
    const bubbles = root.querySelectorAll('.msg.assistant:not(.greeting) .bubble');
    const last = bubbles[bubbles.length - 1];
    if (last) window.__lengths.push(last.textContent.length);
  }).observe(root, {subtree: true, childList: true, characterData: true});
}"""
ACTIVE = """() => {
  const host = document.activeElement;
  if (!host || host.tagName !== 'COPINES-CHAT') return host ? host.tagName : null;
  const inner = host.shadowRoot.activeElement;
  return inner ? (inner.className || inner.tagName) : 'COPINES-CHAT';
}"""


def host_page(page, host_site, widget_url: str, head: str = "", attrs: str = "") -> None:
    """Open a page of another site (an allowed origin) that embeds the widget with one tag."""
    html = (
        f"<!doctype html><html lang='fr'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>{head}</head>"
        f"<body><h1>Mon cabinet</h1><p>Bienvenue.</p>"
        f"<script src='{widget_url}' defer {attrs}></script></body></html>"
    )
    page.goto(host_site.show(html))


def ask(page, text: str) -> None:
    page.locator("copines-chat .composer textarea").fill(text)
    page.keyboard.press("Enter")


def last_answer(page):
    return page.locator("copines-chat .msg.assistant:not(.greeting)").last


def test_a_visitor_sees_the_answer_stream_in_with_its_expert_and_sources(page, site):
    page.goto(site.url + "/")
    launcher = page.locator("copines-chat .launcher")
    assert launcher.get_attribute("aria-expanded") == "false"
    launcher.click()
    assert launcher.get_attribute("aria-expanded") == "true"
    suggestions = page.locator("copines-chat .suggestion")
    assert suggestions.count() == 2
    assert "Audrey" in suggestions.nth(0).text_content()
    assert "Carole" in suggestions.nth(1).text_content()

    page.evaluate(RECORD_STREAM)
    ask(page, QUESTION)
    answer = last_answer(page)
    answer.locator(".tools").wait_for(timeout=20_000)

    # Tokens arrived one after another: the bubble grew through several partial lengths.
    final = len(answer.locator(".bubble").text_content())
    partial = {n for n in page.evaluate("window.__lengths") if 0 < n < final}
    assert len(partial) >= 4, partial
    assert answer.locator(".author .name").text_content() == "Audrey"
    assert answer.locator(".avatar").text_content() == "AU"
    assert answer.locator(".bubble li").count() == 3  # the numbered steps, as a list
    assert "Premier email" in answer.locator(".bubble strong").first.text_content()
    sources = answer.locator(".sources li")
    assert sources.count() >= 1 and sources.first.text_content().strip()
    assert not page.locator("copines-chat .suggestions").is_visible()

    up = answer.get_by_role("button", name="Cette réponse m'aide")
    up.click()
    assert up.get_attribute("aria-pressed") == "true"
    page.locator("copines-chat .thanks", has_text="Merci").wait_for()

    # After a reload, the conversation is still there.
    page.reload()
    if not page.locator("copines-chat .panel").is_visible():
        page.locator("copines-chat .launcher").click()
    restored = page.locator("copines-chat .msg.user .bubble")
    restored.first.wait_for()
    assert restored.first.text_content() == QUESTION
    answer = last_answer(page)
    answer.locator(".sources li").first.wait_for()
    assert answer.locator(".author .name").text_content() == "Audrey"
    assert "Premier email" in answer.locator(".bubble").text_content()
    assert page.locator("copines-chat .msg.assistant:not(.greeting)").count() == 1


def test_the_widget_works_with_the_keyboard_alone(page, site):
    page.goto(site.url + "/")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate(ACTIVE) == "launcher":
            break
    assert page.evaluate(ACTIVE) == "launcher"
    outline = page.locator("copines-chat .launcher").evaluate(
        "el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
    )
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline

    page.keyboard.press("Enter")
    assert page.locator("copines-chat .panel").is_visible()
    assert page.evaluate(ACTIVE) == "TEXTAREA"
    page.keyboard.type("Comment écrire un bon hook pour un reel ?")
    page.keyboard.press("Enter")
    last_answer(page).locator(".tools").wait_for(timeout=20_000)

    # Tab reaches the answer's thumbs; Space presses one.
    for _ in range(12):
        page.keyboard.press("Shift+Tab")
        if "Cette réponse" in (
            page.evaluate(
                "() => document.querySelector('copines-chat').shadowRoot.activeElement"
                "?.getAttribute('aria-label') || ''"
            )
        ):
            break
    page.keyboard.press("Space")
    assert last_answer(page).locator("[aria-pressed=true]").count() == 1

    # Escape closes the panel and gives the focus back to the launcher.
    page.keyboard.press("Escape")
    assert not page.locator("copines-chat .panel").is_visible()
    assert page.evaluate(ACTIVE) == "launcher"


WIDGET_GEOMETRY = """() => {
  const root = document.querySelector('copines-chat').shadowRoot;
  const out = {};
  for (const sel of ['.launcher', '.panel', '.head', '.composer textarea', '.send', '.suggestion', '.greeting .bubble']) {
    const el = root.querySelector(sel);
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    out[sel] = [Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height),
                s.fontFamily, s.fontSize, s.color, s.backgroundColor, s.lineHeight];
  }
  return out;
}"""

HOSTILE_CSS = """<style>
  * { font-family: "Comic Sans MS", cursive !important; font-size: 31px !important;
      line-height: 3 !important; color: red !important; letter-spacing: 4px !important;
      box-sizing: content-box !important; }
  div, section, button, textarea, p, li, ol { all: unset !important; display: block !important;
      margin: 20px !important; padding: 30px !important; border: 5px dashed lime !important;
      background: yellow !important; width: 500px !important; }
  copines-chat, copines-chat * { opacity: 0.2 !important; transform: scale(0.5) !important;
      position: static !important; display: inline !important; width: 10px !important;
      filter: blur(4px) !important; }
  :root { --primary: black; --ink: red; }
</style>"""


def test_a_hostile_host_page_does_not_change_the_widget(page, site, host_site):
    widget = f"{site.url}/widget.js"
    host_page(page, host_site, widget)
    page.locator("copines-chat .launcher").click()
    page.locator("copines-chat .suggestion").first.wait_for()
    page.mouse.move(0, 0)  # no hover effect in the measure
    page.wait_for_timeout(300)
    plain = page.evaluate(WIDGET_GEOMETRY)
    page.evaluate("sessionStorage.clear()")

    host_page(page, host_site, widget, head=HOSTILE_CSS)
    page.locator("copines-chat .launcher").click()
    page.locator("copines-chat .suggestion").first.wait_for()
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)
    assert page.evaluate(WIDGET_GEOMETRY) == plain
    host = page.locator("copines-chat").evaluate(
        "el => [getComputedStyle(el).opacity, getComputedStyle(el).position,"
        " getComputedStyle(el).transform, getComputedStyle(el).filter]"
    )
    assert host == ["1", "fixed", "none", "none"]
    # And it still talks to the service from this other (allowed) site.
    ask(page, QUESTION)
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    assert last_answer(page).locator(".author .name").text_content() == "Audrey"


def test_data_attributes_set_title_greeting_colours_and_position(page, site, host_site):
    attrs = (
        'data-title="Studio Zen" data-greeting="Salut, que puis-je pour toi ?" '
        'data-color="#123456" data-text-color="#fffff0" data-position="left" data-open="true"'
    )
    host_page(page, host_site, f"{site.url}/widget.js", attrs=attrs)
    page.locator("copines-chat .panel").wait_for()
    assert page.locator("copines-chat .head h2").text_content() == "Studio Zen"
    assert "Salut, que puis-je pour toi ?" in page.locator("copines-chat .greeting").text_content()
    head = page.locator("copines-chat .head").evaluate(
        "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color]"
    )
    assert head == ["rgb(18, 52, 86)", "rgb(255, 255, 240)"]
    box = page.locator("copines-chat .panel").bounding_box()
    assert box["x"] < 100  # on the left
    assert page.locator("copines-chat .panel").get_attribute("role") == "dialog"


def test_team_replies_show_up_live_under_the_team_label(page, site, site_settings):
    page.goto(site.url + "/")
    page.locator("copines-chat .launcher").click()
    ask(page, QUESTION)
    last_answer(page).locator(".tools").wait_for(timeout=20_000)
    conversation = page.evaluate(
        "() => JSON.parse(Object.entries(localStorage).find(([k]) => k.startsWith('copines:conversation:'))[1])"
    )

    async def reply() -> None:
        store = create_store(site_settings())
        await store.open()
        try:
            await store.add_message(
                Message(
                    conversation["id"], "team", "Bonjour, c'est Julie de l'agence ! On s'appelle ?"
                )
            )
        finally:
            await store.close()

    # Playwright's sync API owns this thread's event loop: write from another thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, reply()).result(30)
    team = page.locator("copines-chat .msg.assistant", has_text="Julie de l'agence")
    team.wait_for(timeout=10_000)  # the widget polls every few seconds
    assert team.locator(".author .name").text_content() == "L'équipe"
    assert team.locator(".author .label").text_content() == "équipe"
    # At the next opening too.
    page.reload()
    if not page.locator("copines-chat .panel").is_visible():
        page.locator("copines-chat .launcher").click()
    page.locator("copines-chat .msg.assistant", has_text="Julie de l'agence").wait_for()


def test_refusals_are_explained_in_french(page, site_settings, embedder, host_site):
    # The service is unreachable: a clear notice, and the question is given back.
    host_page(page, host_site, "http://127.0.0.1:9/widget.js")
    assert page.locator("copines-chat").count() == 0  # the script itself could not load

    with live_server(site_settings(rate_per_minute=1), embedder=embedder) as limited:
        host_page(page, host_site, f"{limited.url}/widget.js", attrs='data-open="true"')
        ask(page, QUESTION)
        last_answer(page).locator(".tools").wait_for(timeout=20_000)
        ask(page, "Et pour la relance ?")
        notice = page.locator("copines-chat .notice")
        notice.wait_for()
        first = notice.text_content()
        assert re.search(r"attends.*réessayer dans \d+ s", first), first
        assert (
            page.locator("copines-chat .composer textarea").input_value() == "Et pour la relance ?"
        )
        # The wait counts down live, and sending waits for it.
        seconds = int(re.search(r"dans (\d+) s", first).group(1))
        page.wait_for_function(
            """(n) => {
              const t = document.querySelector('copines-chat').shadowRoot
                .querySelector('.notice').textContent;
              const m = /dans (\\d+) s/.exec(t);
              return m && Number(m[1]) <= n - 2;
            }""",
            arg=seconds,
            timeout=5_000,
        )
        assert page.locator("copines-chat .send").is_disabled()

    # Now the server is gone while a page is open: a clear notice with a retry button, and the
    # question is given back.
    with live_server(site_settings(), embedder=embedder) as gone:
        host_page(page, host_site, f"{gone.url}/widget.js", attrs='data-open="true"')
        page.locator("copines-chat .panel").wait_for()
    ask(page, "Tu es là ?")
    notice = page.locator("copines-chat .notice", has_text="Impossible de joindre")
    notice.wait_for(timeout=10_000)
    assert notice.get_by_role("button", name="Réessayer").is_visible()
    assert page.locator("copines-chat .composer textarea").input_value() == "Tu es là ?"


@pytest.mark.parametrize(("name", "viewport"), [("desktop", (1280, 800)), ("mobile", (390, 844))])
def test_screenshots(browser, site, tmp_path, name, viewport):
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        locale="fr-FR",
        device_scale_factor=1,
        is_mobile=name == "mobile",
        has_touch=name == "mobile",
    )
    outside = guard_network(context)
    try:
        page = context.new_page()
        page.goto(site.url + "/")
        page.locator("copines-chat .launcher").click()
        ask(page, QUESTION)
        last_answer(page).locator(".tools").wait_for(timeout=20_000)
        panel = page.locator("copines-chat .panel").bounding_box()
        if name == "mobile":
            assert panel["width"] == viewport[0]  # full width on a phone
        else:
            assert panel["width"] < 420
        target = tmp_path / f"widget-{name}.png"
        page.screenshot(path=str(target))
        if os.environ.get("SAVE_SCREENSHOTS"):
            target.replace(DOCS / f"widget-{name}.png")
    finally:
        context.close()
    assert not outside, outside


def test_a_hand_off_says_clearly_that_a_person_takes_over(page, site, fake):
    fake.default(
        "orch",
        Reply(
            '{"agent": "escalate", "confidence": 0.9, "primary_need": "parler à une personne",'
            ' "secondary_needs": [], "reasoning": "Demande un humain."}'
        ),
    )
    page.goto(site.url + "/")
    page.locator("copines-chat .launcher").click()
    ask(page, "Je voudrais parler à une vraie personne de l'équipe, s'il te plaît.")
    answer = last_answer(page)
    answer.locator(".handoff").wait_for(timeout=20_000)
    # The automatic message is the assistant's, not a person's of the team.
    assert answer.locator(".author .name").text_content() == "Lou"
    assert answer.locator(".author .label").text_content() == "assistante"
    assert answer.locator(".avatar.icon svg").count() == 1
    assert "une personne te répond ici même" in answer.locator(".handoff").text_content()
    assert answer.locator(".bubble").text_content().strip()


def test_the_api_documentation_renders_without_any_cdn(page, site):
    page.goto(site.url + "/docs")
    page.locator(".opblock").first.wait_for(timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    assert any("/api/chat/stream" in p for p in paths), paths


def test_small_talk_is_answered_by_the_assistant_and_kept_after_a_reload(page, site):
    page.goto(site.url + "/")
    page.locator("copines-chat .launcher").click()
    ask(page, "Bonjour !")
    answer = last_answer(page)
    author = answer.locator(".author")
    author.filter(has_text="Lou").wait_for(timeout=20_000)
    page.wait_for_function(
        "() => !document.querySelector('copines-chat').shadowRoot"
        ".querySelector('.msg.assistant[aria-busy]')",
        timeout=20_000,
    )
    assert answer.locator(".handoff").count() == 0
    assert "?" in answer.locator(".bubble").text_content()
    page.reload()
    if not page.locator("copines-chat .panel").is_visible():
        page.locator("copines-chat .launcher").click()
    page.locator("copines-chat .msg.user .bubble").first.wait_for()
    reloaded = last_answer(page)
    reloaded.locator(".author").filter(has_text="Lou").wait_for(timeout=20_000)
