"""Ingestion: load, chunk, tag the owner, embed and store, one transaction per document."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from copines.errors import ConfigError, CopinesError, InputError
from copines.experts import SHARED, Expert
from copines.knowledge.chunking import chunk_document
from copines.knowledge.loaders import SUPPORTED, LoadedDocument
from copines.knowledge.ownership import OwnerDecision, OwnerTagger
from copines.knowledge.parsing import ParseLimits, parse_document
from copines.providers.embeddings import Embedder
from copines.store.base import DocumentRecord, Store, chunk_embed_text
from copines.store.sqlite import mismatch_error


@dataclass
class IngestResult:
    """What happened to one file."""

    filename: str
    status: str  # added | updated | unchanged | owner changed | skipped
    owner: str = ""
    reason: str = ""
    chunks: int = 0
    detail: str = ""

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[IngestResult]]:
    """Expand folders (recursively, hidden files left out); report what cannot be read."""
    files: list[Path] = []
    problems: list[IngestResult] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if child.is_file() and not any(part.startswith(".") for part in rel.parts):
                    files.append(child)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(IngestResult(path.name, "skipped", detail=f"not found: {path}"))
    return files, problems


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Ingester:
    """Turns files into an expert's (or the shared) knowledge."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        experts: dict[str, Expert],
        tagger: OwnerTagger,
        limits: ParseLimits | None = None,
    ):
        self.limits = limits or ParseLimits()
        self.store = store
        self.embedder = embedder
        self.experts = experts
        self.tagger = tagger
        # Files in flight: each embeds its chunks on a thread of its own, so with three one
        # is read, chunked or written while two keep both cores embedding.
        self.concurrency = 3

    def _check_owner(self, owner: str) -> None:
        if owner != "auto" and owner != SHARED and owner not in self.experts:
            choices = ", ".join(["auto", *self.experts, SHARED])
            raise InputError(f"unknown owner '{owner}'; choose one of: {choices}")

    async def check_embedder(self) -> None:
        stored = await self.store.get_embedder_id()
        if stored is not None and stored != self.embedder.id:
            raise mismatch_error(stored, self.embedder.id)

    async def ingest_paths(
        self,
        paths: Iterable[Path],
        owner: str = "auto",
        replace: bool = False,
        on_file: Callable[[Path, IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        """Ingest files and folders; a bad file is reported and skipped, the rest proceeds."""
        self._check_owner(owner)
        await self.check_embedder()
        files, results = collect_files(paths)
        seen: dict[str, Path] = {}
        # `concurrency` files in flight (see __init__). Results keep the order of the files.
        pending: deque[tuple[Path, asyncio.Task[IngestResult]]] = deque()

        async def one(path: Path) -> IngestResult:
            try:
                size = path.stat().st_size
                if size > self.limits.max_file_bytes:  # refused before it is read
                    limit = self.limits.max_file_bytes / 1024 / 1024
                    return IngestResult(
                        path.name, "skipped", detail=f"fichier trop gros ({limit:.0f} Mo au plus)"
                    )
                return await self.ingest_file(path, path.read_bytes(), owner, replace)
            except ConfigError:
                raise
            except (CopinesError, OSError) as exc:
                return IngestResult(path.name, "skipped", detail=str(exc))

        def report(path: Path, result: IngestResult) -> None:
            results.append(result)
            if on_file is not None:
                on_file(path, result)

        try:
            for path in files:
                if path.name in seen:
                    detail = f"same filename as {seen[path.name]}"
                elif path.suffix.lower() not in SUPPORTED:
                    detail = f"unsupported file type '{path.suffix or '-'}'"
                else:
                    seen[path.name] = path
                    pending.append((path, asyncio.create_task(one(path))))
                    while len(pending) >= self.concurrency:
                        done_path, task = pending.popleft()
                        report(done_path, await task)
                    continue
                while pending:  # keep the order: the files before this one first
                    done_path, task = pending.popleft()
                    report(done_path, await task)
                report(path, IngestResult(path.name, "skipped", detail=detail))
            while pending:
                done_path, task = pending.popleft()
                report(done_path, await task)
        finally:
            for _, task in pending:
                task.cancel()
        return results

    async def ingest_file(
        self, path: Path, data: bytes, owner: str = "auto", replace: bool = False
    ) -> IngestResult:
        """Ingest one file's bytes under its filename (the document's key)."""
        return await self.ingest_content(
            path.name,
            content_hash(data),
            lambda: parse_document(path, data, self.limits),
            owner=owner,
            replace=replace,
            source_path=str(path),
            category=path.suffix.lower().lstrip("."),
        )

    async def ingest_content(
        self,
        filename: str,
        digest: str,
        load: Callable[[], LoadedDocument | Awaitable[LoadedDocument]],
        *,
        owner: str = "auto",
        replace: bool = False,
        source_path: str | None = None,
        category: str | None = None,
        url: str | None = None,
    ) -> IngestResult:
        """Ingest one document under `filename`, loaded only when `digest` (its content's
        hash) changed. With owner `auto` the owner comes from the address's patterns (`url`),
        then the filename's, then the content."""
        self._check_owner(owner)
        existing = await self.store.get_document(filename)
        if existing and existing.content_hash == digest and existing.url == url and not replace:
            if owner not in ("auto", existing.owner):
                await self.store.set_owner(filename, owner, "chosen at ingestion")
                return IngestResult(
                    filename, "owner changed", owner, "chosen at ingestion", existing.chunks
                )
            return IngestResult(
                filename, "unchanged", existing.owner, existing.owner_reason, existing.chunks
            )

        # The parse runs off the event loop: a file's in a child process under limits
        # (copines.knowledge.parsing), another source's loader on a thread.
        loaded = await asyncio.to_thread(load)
        if inspect.isawaitable(loaded):
            loaded = await loaded
        chunks = await asyncio.to_thread(chunk_document, loaded.text, loaded.title)
        if not chunks:
            raise InputError("no text found in it")
        vectors = await self.embedder.embed(
            [chunk_embed_text(loaded.title, c.heading_path, c.text) for c in chunks]
        )
        decision = await self._decide_owner(filename, owner, vectors, url, loaded.owner)
        tags = self.experts[decision.owner].tags if decision.owner in self.experts else []
        record = DocumentRecord(
            filename=filename,
            title=loaded.title,
            owner=decision.owner,
            owner_reason=decision.reason,
            tags=list(tags),
            content_hash=digest,
            source_path=source_path,
            category=category,
            url=url if url is not None else loaded.url,
        )
        await self.store.save_document(record, chunks, vectors, self.embedder.id)
        return IngestResult(
            filename,
            "updated" if existing else "added",
            decision.owner,
            decision.reason,
            len(chunks),
        )

    async def _decide_owner(
        self,
        filename: str,
        owner: str,
        vectors,
        url: str | None = None,
        declared: str | None = None,
    ) -> OwnerDecision:
        if owner != "auto":
            return OwnerDecision(owner, "chosen at ingestion", "explicit")
        if declared is not None and (declared == SHARED or declared in self.experts):
            return OwnerDecision(declared, "declared in the front matter", "front matter")
        by_url = self.tagger.by_url(url) if url else None
        return by_url or self.tagger.by_filename(filename) or await self.tagger.by_content(vectors)

    async def reindex(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every chunk with the configured embedder; returns how many."""
        chunks = await self.store.all_chunks()
        if not chunks:
            return 0
        vectors = []
        batch = 256
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            vectors.append(
                await self.embedder.embed(
                    [chunk_embed_text(c.title, c.heading_path, c.text) for c in part]
                )
            )
            if on_progress:
                on_progress(min(start + batch, len(chunks)), len(chunks))
        import numpy as np

        await self.store.replace_embeddings(
            [c.id for c in chunks], np.vstack(vectors), self.embedder.id
        )
        return len(chunks)
