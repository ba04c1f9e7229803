"""One source's sync: what it keeps, removes and reports."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from copines.errors import ConfigError, CopinesError, NotFoundError
from copines.knowledge.ingest import Ingester
from copines.knowledge.loaders import LoadedDocument
from copines.store.base import SourceItem, SourceRecord, Store

Say = Callable[[str], None]


def digest_of(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


@dataclass
class SourceReport:
    """What one sync did to one source. `failed`: it could not list the source, so nothing
    was removed."""

    name: str
    kind: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)  # robots.txt said no
    errors: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def status(self) -> str:
        return "failed" if self.failed else ("partial" if self.errors else "ok")

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "refused": len(self.refused),
            "errors": len(self.errors),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            **self.counts,
            "added_documents": self.added,
            "updated_documents": self.updated,
            "removed_documents": self.removed,
            "refused_addresses": self.refused,
            "error_lines": self.errors,
        }


class SourceRun:
    """The state of one source's sync: the items known before it, those seen during it."""

    def __init__(
        self,
        store: Store,
        ingester: Ingester,
        source: SourceRecord,
        known: dict[str, SourceItem],
        say: Say,
    ):
        self.store = store
        self.ingester = ingester
        self.source = source
        self.known = known
        self.say = say
        self.seen: set[str] = set()
        self.report = SourceReport(source.name, source.kind)

    @property
    def source_id(self) -> int:
        assert self.source.id is not None
        return self.source.id

    def _line(self, text: str) -> None:
        self.say(f"[{self.source.name}] {text}")

    def error(self, line: str, key: str | None = None) -> None:
        """A problem with one item; a known item stays as it was."""
        if key is not None and key in self.known:
            self.seen.add(key)
        self.report.errors.append(line)
        self._line(f"error: {line}")

    def fail(self, line: str) -> None:
        """The source could not be listed: report it and remove nothing."""
        self.report.failed = True
        self.report.errors.append(line)
        self._line(f"failed, nothing removed: {line}")

    def refuse(self, line: str) -> None:
        self.report.refused.append(line)
        self._line(f"refused: {line}")

    async def still_kept(self, key: str) -> bool:
        """Whether a known item's document is still in the store (not deleted by hand)."""
        item = self.known.get(key)
        return item is not None and await self.store.get_document(item.filename) is not None

    async def unchanged(self, key: str) -> None:
        """An item the source says has not changed; an owner newly chosen for the source
        still applies to it."""
        self.seen.add(key)
        self.report.unchanged += 1
        owner = self.source.owner
        item = self.known.get(key)
        if owner != "auto" and item is not None:
            document = await self.store.get_document(item.filename)
            if document is not None and document.owner != owner:
                await self.store.set_owner(item.filename, owner, "chosen for the source")
                self._line(f"{item.filename}: owner now {owner}")

    async def filename_for(self, key: str, wanted: str, url: str | None) -> str:
        """The document name of an item: the one it has, else `wanted`, shared with another
        source reading the same address, or marked with the key when another document holds
        that name."""
        if key in self.known:
            return self.known[key].filename
        existing = await self.store.get_document(wanted)
        if existing is None or (url is not None and existing.url == url):
            return wanted
        return f"{wanted} [{digest_of(key)[:6]}]"

    async def _held_elsewhere(self, filename: str) -> bool:
        """Whether another source keeps this document too (the same page in two sources)."""
        for source in await self.store.list_sources():
            if source.id != self.source_id and source.id is not None:
                items = await self.store.source_items(source.id)
                if any(item.filename == filename for item in items):
                    return True
        return False

    async def keep(
        self,
        key: str,
        wanted_name: str,
        digest: str,
        load: Callable[[], LoadedDocument],
        *,
        url: str | None,
        category: str,
        etag: str | None = None,
        last_modified: str | None = None,
        version: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Ingest one item (re-chunked and re-embedded only when its content changed)."""
        self.seen.add(key)
        filename = await self.filename_for(key, wanted_name, url)
        try:
            result = await self.ingester.ingest_content(
                filename,
                digest,
                load,
                owner=self.source.owner,
                url=url,
                category=category,
                source_path=f"{self.source.kind}:{self.source.name}",
            )
        except ConfigError:
            raise
        except CopinesError as exc:
            self.error(f"{url or key}: {exc}", key)
            return
        if result.status == "added":
            self.report.added.append(filename)
            self._line(f"added {filename} ({result.owner}, {result.chunks} chunks)")
        elif result.status == "unchanged":
            self.report.unchanged += 1
        else:
            self.report.updated.append(filename)
            self._line(f"updated {filename} ({result.owner}, {result.chunks} chunks)")
        await self.store.save_source_item(
            SourceItem(
                source_id=self.source_id,
                key=key,
                filename=filename,
                url=url,
                etag=etag,
                last_modified=last_modified,
                version=version,
                content_hash=digest,
                meta=meta or {},
            )
        )

    async def remove(self, key: str, why: str) -> None:
        """Delete an item's document: it is gone at the source."""
        item = self.known.pop(key, None)
        self.seen.discard(key)
        if item is None:
            return
        await self.store.delete_source_item(self.source_id, key)
        if await self._held_elsewhere(item.filename):
            self._line(f"left {item.filename} to the other source that keeps it ({why})")
            return
        with contextlib.suppress(NotFoundError):  # deleted by hand in the meantime
            await self.store.delete_document(item.filename)
        self.report.removed.append(item.filename)
        self._line(f"removed {item.filename} ({why})")

    async def remove_unseen(self, why: str) -> None:
        """Remove the known items this (complete) listing did not meet. A listing that met
        none of them removes nothing: an unshared folder or database lists as empty."""
        if self.known and not self.seen:
            self.fail(
                f"the source lists none of its {len(self.known)} known documents: nothing "
                "removed (check it is still shared; `copines sources remove` deletes them)"
            )
            return
        for key in sorted(set(self.known) - self.seen):
            await self.remove(key, why)
