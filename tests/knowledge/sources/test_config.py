"""sources.yaml and the experts' url_patterns: what they accept, and the errors they give."""

from __future__ import annotations

from pathlib import Path

import pytest

from copines.errors import ConfigError
from copines.experts import load_experts
from copines.knowledge.ownership import OwnerTagger, url_matches
from copines.knowledge.sources.config import read_sources_file

OWNERS = ["audrey", "carole", "shared"]


def test_each_entry_becomes_a_source(tmp_path: Path):
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  - name: blog\n    sitemap: https://agence.test/sitemap.xml\n"
        "    prefix: https://agence.test/blog/\n    max_pages: 30\n"
        "  - name: drive-audrey\n    drive_folder: ' 1AbC '\n    owner: audrey\n"
        "  - name: notion-all\n    notion_search: '*'\n"
    )
    blog, drive, notion = read_sources_file(path, OWNERS)
    assert (blog.kind, blog.target, blog.owner) == (
        "sitemap",
        "https://agence.test/sitemap.xml",
        "auto",
    )
    assert blog.options == {"prefix": "https://agence.test/blog/", "max_pages": 30}
    assert (drive.kind, drive.target, drive.owner) == ("drive", "1AbC", "audrey")
    assert (notion.kind, notion.target, notion.origin) == ("notion_search", "*", "file")
    assert read_sources_file(tmp_path / "absent.yaml", OWNERS) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sources:\n  - name: x\n    page: https://a.test/\n    crawl: https://a.test/\n",
            "source 1: entry: Value error, give exactly one of",
        ),
        (
            "sources:\n  - name: x\n    page: https://a.test/\n    owner: bob\n",
            "source 'x': unknown owner 'bob'",
        ),
        (
            "sources:\n  - name: x\n    page: https://a.test/\n    colour: red\n",
            "source 1: colour: Extra inputs are not permitted",
        ),
        (
            "sources:\n  - name: x\n    page: https://a.test/\n  - name: x\n    page: https://b.test/\n",
            "the name 'x' is used twice",
        ),
        (
            "sources:\n  - name: x\n    sitemap: https://me:pw@a.test/sitemap.xml\n",
            "source 1: entry: Value error, refused: https://a.test/sitemap.xml carries a user",
        ),
        ("sources: {}\n", "expected a list under 'sources:'"),
        ("sources: [\n", "cannot read it as YAML"),
    ],
)
def test_a_wrong_file_is_refused_with_the_entry_named(tmp_path: Path, text: str, message: str):
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="sources file .*" + message.replace("(", r"\(")):
        read_sources_file(path, OWNERS)


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("/blog/instagram-*", "https://agence.test/blog/instagram-hooks", True),
        ("/blog/instagram-*", "https://agence.test/Blog/Instagram-Reels?x=1", True),
        ("/blog/instagram-*", "https://agence.test/blog/tunnel-instagram", False),
        ("/blog/instagram-*", "https://agence.test/fr/blog/instagram-hooks", False),
        ("agence.test/blog/*", "https://agence.test/blog/x", True),
        ("agence.test/blog/*", "https://other.test/blog/x", False),
        ("/guides/%C3%A9*", "https://agence.test/guides/%C3%A9t%C3%A9", False),
        ("/guides/été*", "https://agence.test/guides/%C3%A9t%C3%A9", True),
    ],
)
def test_url_patterns_are_globs_on_the_address(pattern: str, url: str, matches: bool):
    assert url_matches(pattern, url) is matches


def test_the_bundled_experts_own_their_blog_addresses():
    experts = load_experts()
    tagger = OwnerTagger(experts, embedder=None, shared_patterns=[])  # type: ignore[arg-type]
    assert tagger.by_url("https://lagencedescopines.com/blog/instagram-hooks").owner == "carole"
    assert tagger.by_url("https://lagencedescopines.com/blog/tunnel-de-vente").owner == "audrey"
    assert tagger.by_url("https://lagencedescopines.com/blog/notre-histoire") is None
