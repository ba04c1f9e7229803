"""`copines sync`: revisit every source, re-ingest what changed, remove what is gone.

A source that cannot be listed (sitemap unreadable, Drive or Notion refusing) removes
nothing; an item that fails keeps what is known of it. Unchanged items are recognised without
download where the source says so (HTTP 304 to ETag / Last-Modified, Drive's modifiedTime,
Notion's last_edited_time), and otherwise by their content's hash.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from copines.errors import ConfigError, InputError, NotFoundError
from copines.knowledge.loaders import LoadedDocument, load_document
from copines.knowledge.sources.config import read_sources_file
from copines.knowledge.sources.drive import READABLE, DriveClient
from copines.knowledge.sources.http import Fetcher, FetchError, http_problem
from copines.knowledge.sources.lease import Lease, LeaseLost
from copines.knowledge.sources.notion import NotionClient
from copines.knowledge.sources.run import Say, SourceReport, SourceRun, digest_of
from copines.knowledge.sources.web import (
    HTML_TYPES,
    Robots,
    extract_page,
    page_links,
    read_sitemap,
    under,
)
from copines.store.base import SourceRecord

if TYPE_CHECKING:
    from copines.deps import Deps

log = logging.getLogger("copines.sync")
WEB_KINDS = {"page", "sitemap", "crawl"}
# Notion's last_edited_time is rounded to the minute: see `_edited_near`.
NOTION_ROUNDING = timedelta(minutes=2)
NOTION_KINDS = {"notion_database": "database", "notion_page": "page", "notion_search": "search"}


@dataclass
class SyncReport:
    sources: list[SourceReport] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for report in self.sources:
            for key, value in report.counts.items():
                total[key] = total.get(key, 0) + value
        return total

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals(), "sources": [r.as_dict() for r in self.sources]}


def web_name(url: str) -> str:
    """A page's document name: its address without the scheme ("site.fr/blog/hooks")."""
    parts = urlsplit(url)
    name = f"{parts.netloc}{parts.path or '/'}"
    return f"{name}?{parts.query}" if parts.query else name


class Syncer:
    """Syncs the sources of a store; `web` and `api` fetchers may be given (tests, bench)."""

    def __init__(
        self,
        deps: Deps,
        *,
        web: Fetcher | None = None,
        api: Fetcher | None = None,
        say: Say | None = None,
        lease: Lease | None = None,
    ):
        self.lease = lease  # renewed between items while the sync runs
        self.deps = deps
        self.settings = deps.settings
        self.store = deps.store
        self.web = web or Fetcher.for_web(deps.settings)
        self.api = api or Fetcher.for_api(deps.settings)
        self.say = say or (lambda line: log.info(line))

    async def aclose(self) -> None:
        await self.web.aclose()
        await self.api.aclose()

    async def _tick(self) -> None:
        """Between two items: keep the sync lease (raises LeaseLost when it was taken)."""
        if self.lease is not None:
            await self.lease.renew()

    async def register_file_sources(self) -> list[SourceRecord]:
        """Save the sources of sources.yaml in the store (their sync state is kept)."""
        records = read_sources_file(
            self.settings.resolved_sources_file, [*self.deps.experts, "shared"]
        )
        for record in records:
            record.id = await self.store.save_source(record)
        return records

    async def add_source(self, record: SourceRecord) -> SourceRecord:
        record.id = await self.store.save_source(record)
        return record

    async def sync(self, names: list[str] | None = None) -> SyncReport:
        """Sync every source (or those named), one after the other. A source taken out of
        sources.yaml is no longer synced; its documents stay until `copines sources remove`."""
        in_file = {r.name for r in await self.register_file_sources()}
        sources = []
        for source in await self.store.list_sources():
            if source.origin == "file" and source.name not in in_file:
                self.say(
                    f"[{source.name}] no longer in sources.yaml: not synced; "
                    f"`copines sources remove '{source.name}'` deletes it and its documents"
                )
            else:
                sources.append(source)
        if names:
            unknown = sorted(set(names) - {s.name for s in sources})
            if unknown:
                raise ConfigError(f"no source named {', '.join(unknown)}; see `copines sources`")
            sources = [s for s in sources if s.name in names]
        report = SyncReport()
        for source in sources:
            await self._tick()
            report.sources.append(await self.sync_source(source))
        return report

    async def remove_source(self, name: str) -> list[str]:
        """Delete a source and the documents it made (those no other source keeps).

        Raises:
            NotFoundError: no source of that name.
        """
        found = [s for s in await self.store.list_sources() if s.name == name]
        if not found:
            raise NotFoundError(f"no source named '{name}'; see `copines sources`")
        source = found[0]
        assert source.id is not None
        run = SourceRun(self.store, self.deps.ingester(), source, {}, self.say)
        run.known = {i.key: i for i in await self.store.source_items(source.id)}
        for key in sorted(run.known):
            await self._tick()
            await run.remove(key, "its source was removed")
        await self.store.delete_source(source.id)
        return run.report.removed

    async def sync_source(self, source: SourceRecord) -> SourceReport:
        assert source.id is not None
        known = {item.key: item for item in await self.store.source_items(source.id)}
        run = SourceRun(self.store, self.deps.ingester(), source, known, self.say)
        try:
            if source.kind in WEB_KINDS:
                await self._sync_web(run)
            elif source.kind == "drive":
                await self._sync_drive(run)
            elif source.kind in NOTION_KINDS:
                await self._sync_notion(run)
            else:
                run.fail(f"unknown kind of source '{source.kind}'")
        except LeaseLost:
            raise  # another process syncs now: stop here, record nothing
        except (FetchError, ConfigError) as exc:
            run.fail(str(exc))
        except Exception as exc:  # one source's bug must not stop the others
            log.exception("sync of %s failed", source.name)
            run.fail(f"unexpected error: {type(exc).__name__}: {exc}")
        report = run.report
        await self.store.record_sync(source.id, report.status, report.counts, report.errors)
        c = report.counts
        self.say(
            f"[{source.name}] {report.status}: {c['added']} added, {c['updated']} updated, "
            f"{c['removed']} removed, {c['unchanged']} unchanged, {c['errors']} errors"
        )
        return report

    # Web ------------------------------------------------------------------------------
    async def _sync_web(self, run: SourceRun) -> None:
        source = run.source
        robots = Robots(self.web)
        limit = int(source.options.get("max_pages") or self.settings.crawl_max_pages)
        prefix = source.options.get("prefix") or ""
        complete = True
        if source.kind == "page":
            await self._visit(run, robots, source.target)
            complete = False  # one page: removed only when it answers 404 or 410
        elif source.kind == "sitemap":
            listing = await read_sitemap(
                self.web, source.target, limit, under(prefix) if prefix else None
            )
            if listing.truncated:
                complete = False
                run.error(
                    f"the sitemap lists more than {limit} pages"
                    + (f" under {prefix}" if prefix else "")
                    + f": the first {limit} synced, nothing removed (raise max_pages to take "
                    "them all)"
                )
            for url in listing.pages:
                await self._visit(run, robots, url)
        else:
            complete = await self._crawl(run, robots, source.target, prefix, limit)
        for problem in robots.problems:
            run.error(problem)
        if complete and not robots.problems:
            await run.remove_unseen("no longer listed at the source")

    async def _crawl(
        self, run: SourceRun, robots: Robots, start: str, prefix: str, limit: int
    ) -> bool:
        """Breadth first from `start`, following links under `prefix` (default: the start
        page's folder); True when every page was reached within the limit from a start page
        that answered, and no page whose links are unknown failed (a page that fails hides
        the pages only it links to, so nothing may be removed)."""
        inside = under(prefix or start.rsplit("/", 1)[0] + "/")
        queue, queued, visited = deque([start]), {start}, 0
        complete = True
        while queue:
            if visited >= limit:
                return False
            url = queue.popleft()
            visited += 1
            links = await self._visit(run, robots, url, want_links=True)
            if links is None:
                complete = False
                continue
            for link in links:
                if inside(link) and link not in queued:
                    queued.add(link)
                    queue.append(link)
        return complete and start in run.seen

    async def _visit(
        self, run: SourceRun, robots: Robots, url: str, want_links: bool = False
    ) -> list[str] | None:
        """Fetch one page (conditionally when known) and keep it; returns its links, or None
        when they are unknown (the page failed and no earlier sync read its links)."""
        await self._tick()
        known = run.known.get(url)
        # A page that fails gives the links it had at the last sync, if they were read then.
        known_links = list(known.meta["links"]) if known and "links" in known.meta else None
        if not await robots.allowed(url):
            run.refuse(f"by robots.txt: {url}")
            return []
        headers = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
        # A conditional request only while the document is still here: one deleted by hand
        # would otherwise be "not modified" for ever.
        if known and await run.still_kept(url):
            if known.etag:
                headers["If-None-Match"] = known.etag
            if known.last_modified:
                headers["If-Modified-Since"] = known.last_modified
        try:
            fetched = await self.web.get(url, headers=headers, may_follow=robots.allowed)
        except FetchError as exc:
            run.error(str(exc), url)
            return known_links
        if fetched.status == 304 and known:
            await run.unchanged(url)
            return known_links if known_links is not None else []
        if fetched.status in (404, 410):
            if known:
                await run.remove(url, f"HTTP {fetched.status} at the source")
            else:
                run.error(http_problem(fetched))
            return []
        if fetched.status != 200:
            run.error(http_problem(fetched), url)
            return known_links
        if fetched.content_type not in HTML_TYPES:
            kind = fetched.content_type or "no content type"
            run.error(f"not an HTML page ({kind}): {url}", url)
            return []  # not a page: it links to nothing
        links = page_links(fetched.content, fetched.url) if want_links else []
        extracted = await asyncio.to_thread(extract_page, fetched.content, fetched.url)
        if extracted is None:
            run.error(f"no main text found: {url}", url)
            return links
        text = extracted.text
        await run.keep(
            url,
            web_name(url),
            digest_of(f"{extracted.title}\n{text}"),
            lambda: LoadedDocument(extracted.title, text),
            url=fetched.url,
            category="web",
            etag=fetched.headers.get("etag"),
            last_modified=fetched.headers.get("last-modified"),
            meta={"links": links} if want_links else None,
        )
        return links

    # Google Drive -----------------------------------------------------------------------
    async def _sync_drive(self, run: SourceRun) -> None:
        drive = DriveClient(self.settings, self.api)
        files = await drive.list_folder(run.source.target)
        for file in files:
            if file.mime_type not in READABLE:
                continue  # images, sheets, videos: nothing to read
            await self._tick()
            known = run.known.get(file.id)
            same = known is not None and known.version == file.modified_time
            if same and file.modified_time and await run.still_kept(file.id):
                await run.unchanged(file.id)
                continue
            try:
                data, suffix = await drive.content(file)
            except FetchError as exc:
                run.error(f"{file.name}: {exc}", file.id)
                continue
            shown = f"{file.path}/{file.name}".lstrip("/")
            await run.keep(
                file.id,
                f"drive/{shown}",
                digest_of(data),
                lambda data=data, suffix=suffix, name=file.name: load_document(
                    PurePath(name if name.lower().endswith(suffix) else f"{name}{suffix}"), data
                ),
                url=file.url,
                category=suffix.lstrip("."),
                version=file.modified_time,
            )
        await run.remove_unseen("no longer in the Drive folder")

    # Notion --------------------------------------------------------------------------
    async def _sync_notion(self, run: SourceRun) -> None:
        notion = NotionClient(self.settings, self.api)
        pages = await notion.pages(NOTION_KINDS[run.source.kind], run.source.target)
        for page in pages:
            if page.archived:
                continue  # in the trash: removed below if it was known
            await self._tick()
            known = run.known.get(page.id)
            same = known is not None and known.version == page.last_edited_time
            if (
                same
                and page.last_edited_time
                and not _edited_near(page.last_edited_time, known.meta.get("synced_at"))
                and await run.still_kept(page.id)
            ):
                await run.unchanged(page.id)
                continue
            try:
                text = await notion.markdown(page)
            except FetchError as exc:
                run.error(f"{page.title}: {exc}", page.id)
                continue
            await run.keep(
                page.id,
                f"notion/{page.title}",
                digest_of(f"{page.title}\n{text}"),
                lambda page=page, text=text: _notion_document(page.title, text),
                url=page.url,
                category="notion",
                version=page.last_edited_time,
                meta={"synced_at": datetime.now(UTC).isoformat()},
            )
        await run.remove_unseen("no longer in Notion (deleted, archived or unshared)")


def _edited_near(edited: str, synced_at: str | None) -> bool:
    """Whether a Notion edit time may hide a later edit: Notion gives it to the minute, so an
    edit made just after the last read can carry the same time. Within NOTION_ROUNDING of the
    last read (or with no time of read), the page is read again (its hash tells if it changed)."""
    if not synced_at:
        return True
    try:
        edited_at = datetime.fromisoformat(edited.replace("Z", "+00:00"))
        read_at = datetime.fromisoformat(synced_at)
    except ValueError:
        return True
    return edited_at + NOTION_ROUNDING > read_at


def _notion_document(title: str, text: str) -> LoadedDocument:
    if not text.strip():
        raise InputError("the page is empty")
    return LoadedDocument(title, text)
