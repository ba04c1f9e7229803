"""The widget through the real n8n (data-chat-url): messages go to the workflow's webhook and come
back unstreamed after a typing indicator; history still comes from copines."""

from __future__ import annotations

from tests.api.live import live_server
from tests.browser.test_widget import QUESTION, ask, host_page, last_answer
from tests.deploy.n8n_live import WEBHOOK_PATH, N8n, require_n8n


def test_the_widget_talks_through_n8n(page, site_settings, embedder, host_site, tmp_path):
    binary = require_n8n()
    settings = site_settings(n8n_addresses=["127.0.0.1/32"])
    with live_server(settings, embedder=embedder) as copines:
        n8n = N8n(binary, tmp_path / "n8n", {"COPINES_URL": copines.url})
        n8n.folder.mkdir()
        n8n.import_workflow(host_site.origin)
        n8n.start()
        try:
            posts: list[str] = []
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            attrs = f'data-open="true" data-chat-url="{n8n.url}{WEBHOOK_PATH}"'
            host_page(page, host_site, f"{copines.url}/widget.js", attrs=attrs)

            ask(page, QUESTION)
            answer = last_answer(page)
            answer.locator(".typing").wait_for(timeout=10_000)  # while n8n and the model work
            answer.locator(".tools").wait_for(timeout=30_000)
            assert answer.locator(".author .name").text_content() == "Audrey"
            assert "Premier email" in answer.locator(".bubble").text_content()
            assert answer.locator(".sources li").count() >= 1

            ask(page, "Et pour le deuxième email, tu me donnes un exemple ?")
            page.locator("copines-chat .msg.assistant:not(.greeting) .tools").nth(1).wait_for(
                timeout=30_000
            )
            assert posts.count(f"{n8n.url}{WEBHOOK_PATH}") == 2, posts
            assert not [url for url in posts if url.endswith("/api/chat/stream")]

            # Both turns landed in one conversation, which a reload restores from copines.
            page.reload()
            page.locator("copines-chat .msg.user .bubble").nth(1).wait_for(timeout=10_000)
            assert page.locator("copines-chat .msg.user").count() == 2
        finally:
            n8n.stop()
