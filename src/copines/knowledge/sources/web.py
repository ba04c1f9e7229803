"""Reading the web: main-text extraction, robots.txt, sitemaps and links."""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from copines.knowledge.sources.http import Fetcher, FetchError, http_problem

HTML_TYPES = {"text/html", "application/xhtml+xml"}
# Links to these are not pages: a crawl does not follow them.
NOT_PAGES = re.compile(
    r"\.(?:pdf|jpe?g|png|gif|webp|svg|ico|css|js|json|xml|zip|gz|mp3|mp4|mov|avi|woff2?|ttf)$",
    re.IGNORECASE,
)
MAX_CRAWL_DELAY = 30.0


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
    """robots.txt per site, read once per sync (RFC 9309: a 4xx allows everything; an
    unreachable or failing robots.txt allows nothing)."""

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher
        self.agent = fetcher.user_agent.split("/", 1)[0].split()[0]
        self._rules: dict[str, RobotFileParser | bool] = {}
        self.problems: list[str] = []

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._rules:
            self._rules[origin] = await self._read(origin)
        rules = self._rules[origin]
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(self.agent, url)

    async def _read(self, origin: str) -> RobotFileParser | bool:
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
        parser = RobotFileParser()
        parser.parse(fetched.content.decode("utf-8", errors="replace").splitlines())
        delay = parser.crawl_delay(self.agent)
        if delay:
            self.fetcher.host_delays[urlsplit(origin).netloc] = min(float(delay), MAX_CRAWL_DELAY)
        return parser


async def read_sitemap(fetcher: Fetcher, url: str, limit: int, depth: int = 0) -> list[str]:
    """The page addresses a sitemap (or a sitemap index, two levels deep) lists, up to `limit`.

    Raises:
        FetchError: the sitemap (or one it points to) cannot be read whole.
    """
    fetched = await fetcher.get(url)
    if fetched.status != 200:
        raise FetchError(f"sitemap unreadable: {http_problem(fetched)}")
    data = fetched.content
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise FetchError(f"sitemap unreadable: broken gzip at {url}") from exc
        if len(data) > fetcher.max_bytes:
            raise FetchError(f"sitemap unreadable: {url} is over {fetcher.max_bytes} bytes")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise FetchError(f"sitemap unreadable: {url} is not XML ({exc})") from exc
    locs = [
        (el.text or "").strip()
        for el in root.iter()
        if isinstance(el.tag, str) and el.tag.rsplit("}", 1)[-1] == "loc" and el.text
    ]
    if root.tag.rsplit("}", 1)[-1] == "sitemapindex":
        if depth >= 2:
            raise FetchError(f"sitemap unreadable: indexes nested too deep at {url}")
        pages: list[str] = []
        for loc in locs:
            if len(pages) >= limit:
                break
            pages += await read_sitemap(fetcher, urljoin(url, loc), limit - len(pages), depth + 1)
        return pages[:limit]
    return [urljoin(url, loc) for loc in locs][:limit]
