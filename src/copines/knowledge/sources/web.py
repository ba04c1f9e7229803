"""Reading the web: main-text extraction, robots.txt, sitemaps and links."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin, urlsplit

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException
from protego import Protego

from copines.knowledge.sources.http import Fetcher, FetchError, http_problem, inflate

HTML_TYPES = {"text/html", "application/xhtml+xml"}
# Links to these are not pages: a crawl does not follow them.
NOT_PAGES = re.compile(
    r"\.(?:pdf|jpe?g|png|gif|webp|svg|ico|css|js|json|xml|zip|gz|mp3|mp4|mov|avi|woff2?|ttf)$",
    re.IGNORECASE,
)
MAX_CRAWL_DELAY = 30.0
MAX_SITEMAPS = 50  # sitemaps read for one source (an index and the sitemaps it lists)


@dataclass
class Extracted:
    title: str
    text: str  # Markdown: '#' headings kept for chunking


def extract_page(html: bytes, url: str) -> Extracted | None:
    """The page's main text as Markdown (navigation, footers, ads left out) and its title."""
    import trafilatura

    text = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_formatting=True,
        include_links=False,
        include_images=False,
        include_tables=True,
        include_comments=False,
    )
    if not text or not text.strip():
        return None
    # `extensive=False`: no date search through dateparser (only the title is kept), whose
    # first use in a process loads its language data for seconds.
    metadata = trafilatura.extract_metadata(html, extensive=False)
    title = (metadata.title if metadata is not None else None) or ""
    if not title:
        heading = re.search(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)
        title = heading.group(1).strip() if heading else urlsplit(url).path.strip("/") or url
    return Extracted(title.strip(), text.strip())


def page_links(html: bytes, base: str) -> list[str]:
    """The http(s) links of a page, absolute, without fragments, in order, once each."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    found: dict[str, None] = {}
    for anchor in soup.find_all("a", href=True):
        link = urldefrag(urljoin(base, anchor["href"].strip()))[0]
        parts = urlsplit(link)
        if parts.scheme in ("http", "https") and not NOT_PAGES.search(parts.path):
            found.setdefault(link, None)
    return list(found)


class Robots:
    """robots.txt per site, read once per sync, as RFC 9309 reads it (protego: the longest
    matching rule wins, `*` and `$` wildcards; a 4xx allows everything; an unreachable or
    failing robots.txt allows nothing)."""

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher
        self.agent = fetcher.user_agent.split("/", 1)[0].split()[0]
        self._rules: dict[str, Protego | bool] = {}
        self.problems: list[str] = []

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._rules:
            self._rules[origin] = await self._read(origin)
        rules = self._rules[origin]
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(url, self.agent)

    async def _read(self, origin: str) -> Protego | bool:
        try:
            fetched = await self.fetcher.get(f"{origin}/robots.txt")
        except FetchError as exc:
            self.problems.append(f"robots.txt unreadable, nothing fetched from {origin}: {exc}")
            return False
        if 400 <= fetched.status < 500:
            return True
        if fetched.status != 200:
            self.problems.append(
                f"robots.txt unreadable, nothing fetched from {origin}: {http_problem(fetched)}"
            )
            return False
        parser = Protego.parse(fetched.content.decode("utf-8", errors="replace"))
        delay = parser.crawl_delay(self.agent)
        if delay:
            self.fetcher.host_delays[urlsplit(origin).netloc] = min(float(delay), MAX_CRAWL_DELAY)
        return parser


def under(prefix: str) -> Callable[[str], bool]:
    """Whether an address is under `prefix`: the same scheme and host (exactly, so
    `https://site.fr` does not take in `https://site.fr.evil.test`), and a path below its path."""
    base = urlsplit(prefix)
    origin = (base.scheme.lower(), base.netloc.lower())
    path = base.path or "/"

    def match(url: str) -> bool:
        parts = urlsplit(url)
        if (parts.scheme.lower(), parts.netloc.lower()) != origin:
            return False
        full = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return full.startswith(path + (f"?{base.query}" if base.query else ""))

    return match


@dataclass
class SitemapListing:
    pages: list[str]
    # More pages than the limit, or more sitemaps than MAX_SITEMAPS: the listing is not whole,
    # so nothing may be removed on its account.
    truncated: bool = False
    _listed: set[str] = field(default_factory=set, repr=False)


async def read_sitemap(
    fetcher: Fetcher, url: str, limit: int, wanted: Callable[[str], bool] | None = None
) -> SitemapListing:
    """The page addresses a sitemap (or a sitemap index, two levels deep) lists that `wanted`
    accepts, up to `limit` (the filter runs first, so the limit counts wanted pages only).

    Raises:
        FetchError: the sitemap (or one it points to) cannot be read whole.
    """
    listing = SitemapListing([])
    await _read_into(listing, fetcher, url, limit, wanted or (lambda _url: True), 0, [0])
    return listing


async def _read_into(
    listing: SitemapListing,
    fetcher: Fetcher,
    url: str,
    limit: int,
    wanted: Callable[[str], bool],
    depth: int,
    read: list[int],
) -> None:
    if read[0] >= MAX_SITEMAPS:
        listing.truncated = True
        return
    read[0] += 1
    fetched = await fetcher.get(url)
    if fetched.status != 200:
        raise FetchError(f"sitemap unreadable: {http_problem(fetched)}")
    data = fetched.content
    if data[:2] == b"\x1f\x8b":
        try:
            data = inflate(data, 31, fetcher.max_bytes, url)
        except FetchError as exc:
            raise FetchError(f"sitemap unreadable: {exc}") from exc
    try:
        # defusedxml: no entity expansion (billion laughs), no external entities or DTDs.
        root = DefusedET.fromstring(data)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise FetchError(f"sitemap unreadable: {url} is not safe XML ({exc})") from exc
    locs = [
        (el.text or "").strip()
        for el in root.iter()
        if isinstance(el.tag, str) and el.tag.rsplit("}", 1)[-1] == "loc" and el.text
    ]
    if root.tag.rsplit("}", 1)[-1] == "sitemapindex":
        if depth >= 2:
            raise FetchError(f"sitemap unreadable: indexes nested too deep at {url}")
        for loc in locs:
            if listing.truncated:
                return
            await _read_into(listing, fetcher, urljoin(url, loc), limit, wanted, depth + 1, read)
        return
    for loc in locs:
        page = urljoin(url, loc)
        if not wanted(page) or page in listing._listed:
            continue
        if len(listing.pages) >= limit:
            listing.truncated = True
            return
        listing._listed.add(page)
        listing.pages.append(page)
