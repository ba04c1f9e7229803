"""A web listing that is not whole removes nothing: a sitemap cut at its limit, a crawl with a
page that failed before its links were known. And a page deleted here by hand comes back."""

from __future__ import annotations

from pathlib import Path

from copines.knowledge.sources.guard import AddressGuard
from copines.knowledge.sources.http import Fetcher
from copines.knowledge.sources.sync import web_name
from copines.knowledge.sources.web import read_sitemap, under
from copines.store.base import SourceRecord
from tests.fakes.site import FakeSite, page
from tests.knowledge.sources.conftest import syncer
from tests.knowledge.sources.test_web_sync import HOOKS, OLD, SETTINGS, TUNNEL


def _article(title: str, links: list[str] = ()) -> str:
    return page(
        title,
        ("Partie", f"{title} : un article pour les praticiennes du bien-être, chaque semaine."),
        links=list(links),
    )


async def test_a_sitemap_cut_at_its_limit_removes_nothing(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.pages.update({"/blog/instagram-hooks": HOOKS, "/blog/tunnel-de-vente": TUNNEL})
        site.sitemap = ["/blog/instagram-hooks", "/blog/tunnel-de-vente"]
        source = SourceRecord(
            "blog",
            "sitemap",
            f"{site.url}/sitemap.xml",
            options={"prefix": f"{site.url}/blog/", "max_pages": 2},
        )
        async with make_deps(**SETTINGS) as deps, syncer(deps) as sync:
            await sync.add_source(source)
            [first] = (await sync.sync()).sources
            assert len(first.added) == 2

            # The shop's many pages come first in the sitemap, outside the prefix: they do not
            # count against the limit, and the blog's pages are still found.
            site.sitemap = [f"/shop/item-{i}" for i in range(30)] + site.sitemap
            [second] = (await sync.sync()).sources
            assert second.removed == [] and second.unchanged == 2 and second.errors == []

            # More blog pages than the limit: the first ones synced, none removed, and said.
            site.pages["/blog/horaires"] = OLD
            site.sitemap = ["/blog/horaires", *site.sitemap]
            [third] = (await sync.sync()).sources
            assert third.removed == []
            assert third.errors == [
                f"the sitemap lists more than 2 pages under {site.url}/blog/: the first 2 "
                "synced, nothing removed (raise max_pages to take them all)"
            ]
            names = {d.filename for d in await deps.store.list_documents()}
            assert web_name(f"{site.url}/blog/tunnel-de-vente") in names


async def test_a_crawl_with_a_failing_new_page_removes_nothing(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.pages.update(
            {
                "/blog/": _article("Le blog", ["/blog/hub"]),
                "/blog/hub": _article("Le sommaire", ["/blog/instagram-hooks"]),
                "/blog/instagram-hooks": HOOKS,
            }
        )
        async with make_deps(**SETTINGS) as deps, syncer(deps) as sync:
            await sync.add_source(SourceRecord("blog", "crawl", f"{site.url}/blog/"))
            [first] = (await sync.sync()).sources
            assert len(first.added) == 3

            # The index now links to a new summary page, which fails: the pages only it links
            # to are unknown this time, not gone.
            site.pages["/blog/"] = _article("Le blog", ["/blog/hub2"])
            site.pages["/blog/hub2"] = _article("Le sommaire 2", ["/blog/instagram-hooks"])
            for status in (503, 500):
                site.statuses["/blog/hub2"] = status
                [second] = (await sync.sync()).sources
                assert second.removed == [], second.removed
                assert f"HTTP {status}" in "\n".join(second.errors)

            # It answers again: the crawl is whole, and the page no longer linked goes.
            del site.statuses["/blog/hub2"]
            [third] = (await sync.sync()).sources
        assert third.removed == [web_name(f"{site.url}/blog/hub")]
        assert web_name(f"{site.url}/blog/hub2") in third.added


async def test_a_known_page_that_fails_keeps_its_links(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.pages.update(
            {
                "/blog/": _article("Le blog", ["/blog/hub"]),
                "/blog/hub": _article("Le sommaire", ["/blog/instagram-hooks"]),
                "/blog/instagram-hooks": HOOKS,
            }
        )
        async with make_deps(**SETTINGS) as deps, syncer(deps) as sync:
            await sync.add_source(SourceRecord("blog", "crawl", f"{site.url}/blog/"))
            await sync.sync()
            site.statuses["/blog/hub"] = 500  # known: its links of the last sync still count
            [second] = (await sync.sync()).sources
        assert second.removed == [] and second.unchanged == 2


async def test_a_page_deleted_by_hand_comes_back_at_the_next_sync(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        url = f"{site.url}/blog/instagram-hooks"
        async with make_deps(**SETTINGS) as deps, syncer(deps) as sync:
            await sync.add_source(SourceRecord("hooks", "page", url))
            await sync.sync()
            await deps.store.delete_document(web_name(url))
            [second] = (await sync.sync()).sources
            assert second.unchanged == 0 and len(second.added) == 1
            assert await deps.store.get_document(web_name(url)) is not None
        last = [r for r in site.requests if r.path == "/blog/instagram-hooks"][-1]
        assert "If-None-Match" not in last.headers and "If-Modified-Since" not in last.headers


async def test_a_sitemap_index_is_followed():
    with FakeSite() as site:
        site.sitemap = ["/blog/a", "/blog/b", "/shop/c"]
        fetcher = Fetcher(user_agent="copines-test/1", guard=AddressGuard(["127.0.0.1/32"]))
        try:
            listing = await read_sitemap(
                fetcher, f"{site.url}/sitemap-index.xml", 10, under(f"{site.url}/blog/")
            )
        finally:
            await fetcher.aclose()
    assert listing.pages == [f"{site.url}/blog/a", f"{site.url}/blog/b"]
    assert not listing.truncated
    assert site.paths() == ["/sitemap-index.xml", "/sitemap.xml"]


def test_a_prefix_takes_in_its_own_host_only():
    inside = under("https://site.fr")
    assert inside("https://site.fr/blog/x") and inside("https://SITE.fr/")
    assert not inside("https://site.fr.evil.test/blog/x")
    assert not inside("https://site.fr@evil.test/")
    assert not inside("http://site.fr/blog/x")
    blog = under("https://site.fr/blog/")
    assert blog("https://site.fr/blog/x") and not blog("https://site.fr/blogue")
