"""Main-text extraction and link discovery on their own, with no network at all."""

from __future__ import annotations

import socket

import pytest

from copines.knowledge.sources.web import extract_page, page_links
from tests.knowledge.sources.test_web_sync import HOOKS


def test_extraction_keeps_the_article_and_its_headings_and_uses_no_network(
    monkeypatch: pytest.MonkeyPatch,
):
    def no_network(*args: object, **kwargs: object):
        raise AssertionError("extraction tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    extracted = extract_page(HOOKS.encode(), "https://agence.test/blog/instagram-hooks")
    assert extracted is not None
    assert extracted.title == "Les hooks Instagram"
    lines = extracted.text.splitlines()
    assert "## Pourquoi un hook" in lines and "## Trois formules" in lines
    assert "Mentions légales" not in extracted.text and "Accueil" not in extracted.text


def test_a_page_without_text_gives_nothing():
    assert (
        extract_page(
            b"<html><head><title>Vide</title></head><body></body></html>", "https://a.test/"
        )
        is None
    )


def test_links_are_absolute_without_fragments_and_files():
    html = (
        b"<a href='/blog/a#top'>a</a><a href='b'>b</a><a href='/blog/a'>again</a>"
        b"<a href='/doc.pdf'>pdf</a><a href='mailto:x@y.z'>mail</a>"
        b"<a href='https://other.test/c'>c</a>"
    )
    assert page_links(html, "https://agence.test/blog/") == [
        "https://agence.test/blog/a",
        "https://agence.test/blog/b",
        "https://other.test/c",
    ]
