"""robots.txt read as RFC 9309 says, from a real local site: the longest matching rule wins
whatever its order, `*` and `$` are wildcards, a group naming our agent replaces `*`."""

from __future__ import annotations

import pytest

from copines.knowledge.sources.guard import AddressGuard
from copines.knowledge.sources.http import Fetcher
from copines.knowledge.sources.web import Robots
from tests.fakes.site import FakeSite

ROBOTS = (
    "User-agent: *\n"
    "Allow: /\n"
    "Disallow: /private/\n"
    "Disallow: /*?replytocom=\n"
    "Disallow: /*.php$\n"
    "Allow: /private/public-note\n"
    "Crawl-delay: 2\n"
)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/blog/instagram-hooks", True),
        ("/private/notes", False),  # `Allow: /` first does not win: the longer rule does
        ("/private/public-note", True),  # the longest match, an Allow
        ("/blog/hooks?replytocom=12", False),  # a wildcard in the middle
        ("/blog/hooks?page=2", True),
        ("/index.php", False),  # `$`: ends with .php
        ("/index.php?x=1", True),
    ],
)
async def test_rules_are_read_as_rfc_9309_says(path: str, allowed: bool):
    with FakeSite() as site:
        site.robots = ROBOTS
        fetcher = Fetcher(user_agent="copines-sync/0.1", guard=AddressGuard(["127.0.0.1/32"]))
        try:
            robots = Robots(fetcher)
            assert await robots.allowed(f"{site.url}{path}") is allowed
            assert fetcher.host_delays == {f"127.0.0.1:{site.port}": 2.0}
        finally:
            await fetcher.aclose()


async def test_a_group_for_our_agent_replaces_the_star_group():
    with FakeSite() as site:
        site.robots = "User-agent: *\nDisallow: /\n\nUser-agent: copines-sync\nDisallow: /drafts/\n"
        fetcher = Fetcher(user_agent="copines-sync/0.1", guard=AddressGuard(["127.0.0.1/32"]))
        try:
            robots = Robots(fetcher)
            assert await robots.allowed(f"{site.url}/blog/x")
            assert not await robots.allowed(f"{site.url}/drafts/x")
        finally:
            await fetcher.aclose()
