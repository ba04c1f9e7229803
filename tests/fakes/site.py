"""A small local website for the sync tests: pages with ETag and Last-Modified (answering
304 to conditional requests), a sitemap, a robots.txt disallowing /private/, and the bad cases:
a redirect loop, a 404, a PDF, a huge page, a slow page, a redirect to the metadata address.

    with FakeSite() as site:
        site.pages["/blog/x"] = page("Titre", "## Partie\n\nTexte")
        site.sitemap = ["/blog/x", "/missing"]
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
from dataclasses import dataclass, field
from email.utils import formatdate

from aiohttp import web

from tests.fakes._threaded import ThreadedServer


def page(title: str, *sections: tuple[str, str], links: list[str] = ()) -> str:
    """An HTML page with a navigation bar, an article of titled sections and a footer."""
    body = "".join(f"<h2>{heading}</h2><p>{text}</p>" for heading, text in sections)
    nav = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return (
        f"<html><head><title>{title}</title></head><body>"
        f"<nav><a href='/'>Accueil</a> {nav}</nav>"
        f"<article><h1>{title}</h1>{body}</article>"
        "<footer>Mentions légales - L'Agence des Copines</footer></body></html>"
    )


@functools.cache
def gzip_bomb(expanded: int = 40_000_000) -> bytes:
    """A few tens of kilobytes that expand to `expanded` bytes of XML-ish filler."""
    return gzip.compress(b"<urlset>" + b" " * expanded + b"</urlset>", compresslevel=9)


def redirect(location: str):
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handler


@dataclass
class FakeSite(ThreadedServer):
    name: str = "fake-site"
    pages: dict[str, str] = field(default_factory=dict)
    sitemap: list[str] = field(default_factory=list)
    sitemap_status: int = 200
    robots: str = "User-agent: *\nDisallow: /private/\n"
    slow_seconds: float = 5.0
    etags: bool = True  # False: Last-Modified only (If-Modified-Since answers 304)
    conditional: bool = True  # False: every page answers 200 whole, as some servers do
    huge_bytes: int = 3_000_000
    statuses: dict[str, int] = field(default_factory=dict)  # a path answering this error
    delays: dict[str, float] = field(default_factory=dict)  # a path answering this late
    # Last-Modified per path: the time the page's text was last set.
    _versions: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def _version(self, path: str) -> tuple[str, str]:
        html = self.pages[path]
        tag = '"' + hashlib.sha1(html.encode()).hexdigest()[:16] + '"'
        known = self._versions.get(path)
        if known is None or known[0] != html:
            import time

            self._versions[path] = (html, tag, formatdate(time.time(), usegmt=True))
        return self._versions[path][1], self._versions[path][2]

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/robots.txt", self.robots_txt)
        app.router.add_get("/sitemap.xml", self.sitemap_xml)
        app.router.add_get("/sitemap-index.xml", self.sitemap_index)
        app.router.add_get("/loop-a", redirect("/loop-b"))
        app.router.add_get("/loop-b", redirect("/loop-a"))
        app.router.add_get("/to-metadata", redirect("http://169.254.169.254/latest/meta-data/"))
        app.router.add_get("/blog/moved", redirect("/private/notes"))
        app.router.add_get("/brochure.pdf", self.pdf)
        app.router.add_get("/huge", self.huge)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/bomb.xml.gz", self.bomb_file)
        app.router.add_get("/bomb", self.bomb_encoded)
        app.router.add_get("/redirect", self.redirect_to)
        app.router.add_get("/{tail:.*}", self.serve_page)

    async def robots_txt(self, request: web.Request) -> web.Response:
        return web.Response(text=self.robots, content_type="text/plain")

    async def sitemap_xml(self, request: web.Request) -> web.Response:
        if self.sitemap_status != 200:
            return web.Response(status=self.sitemap_status, text="boom")
        urls = "".join(f"<url><loc>{self.url}{p}</loc></url>" for p in self.sitemap)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
        )
        return web.Response(text=xml, content_type="application/xml")

    async def sitemap_index(self, request: web.Request) -> web.Response:
        xml = (
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{self.url}/sitemap.xml</loc></sitemap></sitemapindex>"
        )
        return web.Response(text=xml, content_type="application/xml")

    async def pdf(self, request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.4 not a page", content_type="application/pdf")

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        chunk = b"<p>" + b"bla " * 16_000 + b"</p>"
        sent = 0
        try:
            while sent < self.huge_bytes:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_seconds)
        return web.Response(text=page("Lent", ("Lent", "Enfin.")), content_type="text/html")

    async def bomb_file(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip_bomb(), content_type="application/gzip")

    async def bomb_encoded(self, request: web.Request) -> web.Response:
        return web.Response(
            body=gzip_bomb(),
            headers={"Content-Type": "text/html", "Content-Encoding": "gzip"},
        )

    async def redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def serve_page(self, request: web.Request) -> web.Response:
        path = request.path
        if path in self.delays:
            await asyncio.sleep(self.delays[path])
        if path in self.statuses:
            return web.Response(status=self.statuses[path], text="panne")
        if path not in self.pages:
            return web.Response(status=404, text="introuvable")
        tag, modified = self._version(path)
        headers = {"Last-Modified": modified}
        if not self.conditional:
            headers = {}
        elif self.etags:
            headers["ETag"] = tag
            if request.headers.get("If-None-Match") == tag:
                return web.Response(status=304, headers=headers)
        elif request.headers.get("If-Modified-Since") == modified:
            return web.Response(status=304, headers=headers)
        return web.Response(text=self.pages[path], content_type="text/html", headers=headers)
