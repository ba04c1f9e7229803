"""Sync benchmark: a local website of the sample knowledge, synced again and again.

    .venv/bin/python bench/sync.py                 # 72 pages (the 24 sample notes, 3 times)
    .venv/bin/python bench/sync.py --copies 1 --no-write

Measures, and writes to the `sync` section of docs/benchmarks.md:
1. Main-text extraction alone (trafilatura, Markdown output) per page.
2. A first sync (fetch, robots.txt, extract, chunk, embed with the bundled USE model, store
   in SQLite), then a sync with nothing changed (every page answers 304 to its ETag), one
   against a server that ignores conditional requests (every page fetched and extracted again,
   then recognised by its text's hash: nothing re-embedded), and one with a single page changed.
The site is a local server (tests/fakes/site.py), without pacing (COPINES_FETCH_DELAY=0).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.fakes.site import FakeSite  # noqa: E402

from bench._report import machine, update_section  # noqa: E402
from copines.config import Settings  # noqa: E402
from copines.deps import Deps  # noqa: E402
from copines.knowledge.sources.sync import Syncer  # noqa: E402
from copines.knowledge.sources.web import extract_page  # noqa: E402
from copines.providers.embeddings import LocalEmbedder  # noqa: E402

EXAMPLES = ROOT / "examples" / "knowledge"
BULLET = re.compile(r"^(?:[-*]|\d+\.)")


def as_html(markdown: str, title: str) -> str:
    """The note as a web page: headings, paragraphs and lists, with a menu and a footer."""
    body = []
    for block in re.split(r"\n\s*\n", re.sub(r"\A---.*?\n---\n", "", markdown, flags=re.S)):
        block = block.strip()
        if not block:
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)", block)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{heading.group(2)}</h{level}>")
        elif block.startswith(("- ", "* ", "1. ")):
            items = "".join(f"<li>{BULLET.sub('', li).strip()}</li>" for li in block.splitlines())
            body.append(f"<ul>{items}</ul>")
        else:
            body.append(f"<p>{block}</p>")
    menu = "".join(f'<a href="/blog/{i}">Article {i}</a> ' for i in range(12))
    return (
        f"<html><head><title>{title}</title></head><body><header><nav>{menu}</nav></header>"
        f"<main><article>{''.join(body)}</article></main>"
        "<footer>L'Agence des Copines - mentions légales - newsletter</footer></body></html>"
    )


async def timed_sync(deps: Deps) -> tuple[float, dict[str, int]]:
    syncer = Syncer(deps, say=lambda line: None)
    try:
        start = time.perf_counter()
        report = await syncer.sync()
        return time.perf_counter() - start, report.totals()
    finally:
        await syncer.aclose()


async def main(copies: int, write: bool) -> None:
    notes = sorted(EXAMPLES.glob("*.md"))
    pages = {
        f"/blog/{note.stem}-{copy}": as_html(note.read_text(encoding="utf-8"), note.stem)
        for copy in range(copies)
        for note in notes
    }
    extract_ms = []
    extract_page(next(iter(pages.values())).encode(), "https://agence.test/")  # imports, caches
    for path, html in pages.items():
        start = time.perf_counter()
        extract_page(html.encode(), f"https://agence.test{path}")
        extract_ms.append((time.perf_counter() - start) * 1000)

    embedder = LocalEmbedder(threads=2)
    embedder.warm_up()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, FakeSite() as site:
        site.pages.update(pages)
        site.sitemap = list(pages)
        (Path(tmp) / "sources.yaml").write_text(
            f"sources:\n  - name: site\n    sitemap: {site.url}/sitemap.xml\n"
            f"    max_pages: {len(pages)}\n"
        )
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            database_url=f"sqlite:///{tmp}/sync.db",
            fetch_allow_networks=["127.0.0.1/32"],
            fetch_delay=0,
        )
        deps = await Deps.create(settings, embedder=embedder)
        try:
            for label in (
                "first sync",
                "nothing changed (304)",
                "no conditional answers",
                "one page changed",
            ):
                if label == "no conditional answers":
                    site.conditional = False
                if label == "one page changed":
                    site.conditional = True
                    first = next(iter(pages))
                    site.pages[first] = site.pages[first].replace(
                        "</article>", "<p>Mis à jour.</p></article>"
                    )
                seconds, totals = await timed_sync(deps)
                rows.append((label, seconds, totals))
                print(f"{label}: {seconds:.2f} s, {totals}")
        finally:
            await deps.aclose()

    n = len(pages)
    lines = [
        "### Sync of a website (local server, bundled USE model, SQLite)",
        "",
        f"{machine()}; {n} pages (the sample notes as web pages, menu and footer around them), "
        "no pacing. `bench/sync.py`.",
        "",
        f"Main-text extraction alone (trafilatura, Markdown): median "
        f"{statistics.median(extract_ms):.1f} ms a page, max {max(extract_ms):.1f} ms "
        "(after one warm-up call, which loads trafilatura's modules).",
        "",
        "| sync | wall time | per page | added | updated | unchanged | removed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, seconds, t in rows:
        lines.append(
            f"| {label} | {seconds:.2f} s | {seconds / n * 1000:.0f} ms | {t['added']} | "
            f"{t['updated']} | {t['unchanged']} | {t['removed']} |"
        )
    lines += [
        "",
        "A page answering 304 costs one request; one answering 200 unchanged costs the request "
        "and the extraction but no embedding (its text's hash is the same). Against the real "
        "site add the pace, COPINES_FETCH_DELAY (1 s a request by default, or robots.txt's "
        "Crawl-delay).",
    ]
    print("\n".join(lines))
    if write:
        update_section("sync", "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.copies, not args.no_write))
