"""A small local website synced twice: added, updated, removed, unchanged, refused, and the
bad answers reported while the rest goes on."""

from __future__ import annotations

from pathlib import Path

from copines.deps import Deps
from copines.knowledge.sources.sync import web_name
from tests.fakes.site import FakeSite, page
from tests.knowledge.sources.conftest import LOCAL, syncer, write_sources

HOOKS = page(
    "Les hooks Instagram",
    (
        "Pourquoi un hook",
        "Un hook est la première phrase de ton reel : trois secondes pour "
        "accrocher la personne qui scrolle, sinon elle passe au suivant sans t'écouter.",
    ),
    (
        "Trois formules",
        "La question directe, le chiffre surprenant, la promesse concrète. "
        "Pour une naturopathe : trois erreurs qui fatiguent ton foie chaque matin.",
    ),
)
TUNNEL = page(
    "Construire son tunnel de vente",
    (
        "La page de capture",
        "Ton lead magnet gratuit contre une adresse email : une page "
        "simple, une promesse claire, un formulaire relié à ton outil d'emailing.",
    ),
    (
        "La séquence de bienvenue",
        "Cinq emails sur dix jours, automatisés dans Systeme.io, "
        "pour présenter ton approche et proposer ton accompagnement.",
    ),
)
TUNNEL_V2 = TUNNEL.replace("Cinq emails sur dix jours", "Sept emails sur quatorze jours")
OLD = page(
    "Nos horaires d'été",
    (
        "Horaires",
        "L'agence ferme ses portes du premier au quinze août, les réponses aux "
        "messages reprennent ensuite dans les quarante-huit heures ouvrées.",
    ),
)
BAD_PATHS = ["/missing", "/loop-a", "/brochure.pdf", "/huge", "/slow", "/blog/moved"]
SETTINGS = {**LOCAL, "fetch_timeout": 1.0, "fetch_max_bytes": 1_000_000}


def site_with_pages(site: FakeSite) -> None:
    site.pages.update(
        {
            "/blog/instagram-hooks": HOOKS,
            "/blog/tunnel-de-vente": TUNNEL,
            "/blog/horaires": OLD,
            "/private/notes": page("Privé", ("Secret", "Ne pas lire.")),
        }
    )
    site.sitemap = [
        "/blog/instagram-hooks",
        "/blog/tunnel-de-vente",
        "/blog/horaires",
        "/private/notes",
        *BAD_PATHS,
    ]
    site.slow_seconds = 3


async def chunk_texts(deps: Deps, filename: str) -> str:
    doc = await deps.store.get_document(filename)
    assert doc is not None
    return "\n".join(c.text for c in await deps.store.all_chunks() if c.title == doc.title)


async def test_a_site_is_synced_and_kept_in_sync(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site_with_pages(site)
        sources = write_sources(
            tmp_path, f"sources:\n  - name: blog\n    sitemap: {site.url}/sitemap.xml\n"
        )
        hooks, tunnel, old = (
            web_name(f"{site.url}{p}")
            for p in ("/blog/instagram-hooks", "/blog/tunnel-de-vente", "/blog/horaires")
        )
        async with make_deps(**SETTINGS, sources_file=sources) as deps:
            lines: list[str] = []
            async with syncer(deps, lines) as sync:
                [first] = (await sync.sync()).sources

            assert sorted(first.added) == sorted([hooks, tunnel, old])
            assert first.refused == [f"by robots.txt: {site.url}/private/notes"]
            assert "/private/notes" not in site.paths()
            errors = "\n".join(first.errors)
            assert len(first.errors) == 6, errors
            assert f"HTTP 404 not found: {site.url}/missing" in errors
            assert "redirect loop" in errors
            assert "not an HTML page (application/pdf)" in errors
            assert "too large" in errors and "timed out after 1 s" in errors
            assert f"refused by robots.txt: {site.url}/private/notes (redirected from" in errors
            assert first.status == "partial"
            assert any("error: redirect loop" in line for line in lines)  # the console's lines

            docs = {d.filename: d for d in await deps.store.list_documents()}
            assert docs[hooks].url == f"{site.url}/blog/instagram-hooks"
            assert (docs[hooks].owner, docs[hooks].owner_reason) == (
                "carole",
                "address matches '/blog/instagram-*'",
            )
            assert docs[tunnel].owner == "audrey"
            hooks_text = await chunk_texts(deps, hooks)
            assert "## Trois formules" in hooks_text.splitlines()  # headings kept for chunking
            assert "Mentions légales" not in hooks_text  # the main text only
            found = await deps.retriever.search("carole", "un hook de reel en trois secondes")
            assert found.passages and found.passages[0].filename == hooks
            assert found.passages[0].url == f"{site.url}/blog/instagram-hooks"  # for the sources
            assert site.requests[0].headers["User-Agent"].startswith("copines-sync/")

            # Between two syncs: one page changed, one removed (gone from the sitemap, 404).
            site.pages["/blog/tunnel-de-vente"] = TUNNEL_V2
            del site.pages["/blog/horaires"]
            site.sitemap.remove("/blog/horaires")
            before = len(site.requests)
            async with syncer(deps) as sync:
                [second] = (await sync.sync()).sources

            assert second.updated == [tunnel]
            assert second.removed == [old]
            assert second.added == [] and second.unchanged == 1
            assert len(second.errors) == 6
            assert await deps.store.get_document(old) is None
            text = await chunk_texts(deps, tunnel)
            assert "Sept emails sur quatorze jours" in text and "Cinq emails" not in text
            hooks_hits = [r for r in site.requests[before:] if r.path == "/blog/instagram-hooks"]
            assert hooks_hits and "If-None-Match" in hooks_hits[0].headers

            # A sitemap that fails to load removes nothing.
            site.sitemap_status = 500
            async with syncer(deps) as sync:
                [third] = (await sync.sync()).sources
            assert third.status == "failed" and third.removed == []
            assert "sitemap unreadable: HTTP 500" in third.errors[0]
            assert {hooks, tunnel} <= {d.filename for d in await deps.store.list_documents()}

            [stored] = await deps.store.list_sources()
            assert (stored.name, stored.kind, stored.origin) == ("blog", "sitemap", "file")
            assert stored.last_status == "failed" and stored.documents == 2
            assert stored.errors == third.errors


async def test_last_modified_alone_gives_conditional_requests(make_deps, tmp_path: Path):
    with FakeSite() as site:
        site.etags = False
        site.pages["/blog/instagram-hooks"] = HOOKS
        async with make_deps(**SETTINGS) as deps, syncer(deps) as sync:
            from copines.store.base import SourceRecord

            await sync.add_source(SourceRecord("hooks", "page", f"{site.url}/blog/instagram-hooks"))
            [first] = (await sync.sync()).sources
            [second] = (await sync.sync()).sources
        assert len(first.added) == 1
        assert (second.unchanged, second.updated) == (1, [])
        last = [r for r in site.requests if r.path == "/blog/instagram-hooks"][-1]
        assert "If-Modified-Since" in last.headers and "If-None-Match" not in last.headers


async def test_a_crawl_stays_under_its_prefix_and_its_page_limit(make_deps, tmp_path: Path):
    with FakeSite() as site:
        links = ["/blog/instagram-hooks", "/blog/tunnel-de-vente", "/contact", "/blog/horaires"]
        site.pages.update(
            {
                "/blog/": page(
                    "Le blog",
                    (
                        "Articles",
                        "Tous nos articles pour les solopreneures du bien-être, chaque semaine.",
                    ),
                    links=links,
                ),
                "/blog/instagram-hooks": HOOKS,
                "/blog/tunnel-de-vente": TUNNEL,
                "/blog/horaires": OLD,
                "/contact": page("Contact", ("Nous écrire", "Par email.")),
            }
        )
        async with make_deps(**SETTINGS) as deps:
            from copines.store.base import SourceRecord

            async with syncer(deps) as sync:
                await sync.add_source(
                    SourceRecord("blog", "crawl", f"{site.url}/blog/", options={"max_pages": 3})
                )
                [limited] = (await sync.sync()).sources
                assert len(limited.added) == 3
                assert "/contact" not in site.paths()

                # Within its limit the crawl is complete: a page no longer linked goes.
                await sync.add_source(
                    SourceRecord("blog", "crawl", f"{site.url}/blog/", options={"max_pages": 10})
                )
                [full] = (await sync.sync()).sources
                assert len(full.added) == 1 and full.unchanged == 3
                site.pages["/blog/"] = site.pages["/blog/"].replace(
                    '<a href="/blog/horaires">/blog/horaires</a>', ""
                )
                [third] = (await sync.sync()).sources
        assert third.removed == [web_name(f"{site.url}/blog/horaires")]
        assert "/contact" not in site.paths()


async def test_an_unreachable_source_does_not_stop_the_others(make_deps, tmp_path: Path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with FakeSite() as site:
        site.pages["/blog/instagram-hooks"] = HOOKS
        sources = write_sources(
            tmp_path,
            "sources:\n"
            f"  - name: down\n    sitemap: http://127.0.0.1:{closed}/sitemap.xml\n"
            f"  - name: metadata\n    page: http://169.254.169.254/latest/meta-data/\n"
            f"  - name: up\n    page: {site.url}/blog/instagram-hooks\n",
        )
        lines: list[str] = []
        async with (
            make_deps(**SETTINGS, sources_file=sources) as deps,
            syncer(deps, lines) as sync,
        ):
            down, metadata, up = (await sync.sync()).sources
        assert down.status == "failed" and "unreachable host" in down.errors[0]
        assert metadata.status == "partial" and "is a link-local address" in metadata.errors[0]
        assert up.status == "ok" and len(up.added) == 1
        assert any(line.startswith("[down] failed, nothing removed: ") for line in lines)


async def test_a_crawl_whose_start_page_fails_removes_nothing(make_deps, tmp_path: Path):
    from copines.store.base import SourceRecord

    with FakeSite() as site:
        site.pages["/blog/"] = page(
            "Le blog",
            ("Articles", "Nos articles de la semaine pour les praticiennes."),
            links=["/blog/instagram-hooks"],
        )
        site.pages["/blog/instagram-hooks"] = HOOKS
        async with make_deps(**SETTINGS) as deps, syncer(deps) as sync:
            await sync.add_source(SourceRecord("blog", "crawl", f"{site.url}/blog/"))
            [first] = (await sync.sync()).sources
            assert len(first.added) == 2
            del site.pages["/blog/"]  # the index answers 404 for a while
            [second] = (await sync.sync()).sources
            assert second.removed == [web_name(f"{site.url}/blog/")]
            assert await deps.store.get_document(web_name(f"{site.url}/blog/instagram-hooks"))
