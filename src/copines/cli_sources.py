"""The source commands: `copines sync`, `copines sources`, and ingestion from URLs."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import click
from rich.markup import escape

from copines.deps import Deps
from copines.errors import InputError
from copines.knowledge.sources.http import FetchError, refuse_userinfo
from copines.knowledge.sources.lease import Lease
from copines.knowledge.sources.sync import Syncer, SyncReport
from copines.store.base import SourceRecord


def is_url(arg: str) -> bool:
    return arg.lower().startswith(("http://", "https://"))


def url_source(
    url: str, kind: str | None, prefix: str | None, max_pages: int | None, owner: str
) -> SourceRecord:
    """The source `copines ingest URL` registers (and `copines sync` revisits)."""
    if kind is None:
        kind = "sitemap" if url.lower().split("?")[0].endswith((".xml", ".xml.gz")) else "page"
    options: dict = {}
    if prefix:
        options["prefix"] = prefix
    if max_pages:
        options["max_pages"] = max_pages
    return SourceRecord(name=url, kind=kind, target=url, owner=owner, options=options)


def cli_lease(deps: Deps) -> Lease:
    return Lease(deps.store, f"cli:{os.getpid()}")


@asynccontextmanager
async def leased_syncer(deps: Deps, say) -> AsyncIterator[Syncer]:
    """A Syncer under this command's sync lease (refused while another sync runs); the
    lease is released even when the Syncer cannot be built."""
    lease = cli_lease(deps)
    await lease.claim_or_busy()
    syncer: Syncer | None = None
    try:
        syncer = Syncer(deps, say=say, lease=lease)
        yield syncer
    finally:
        try:
            if syncer is not None:
                await syncer.aclose()
        finally:
            await lease.release()


async def ingest_urls(deps: Deps, sources: list[SourceRecord], say) -> SyncReport:
    if any(s.owner != "auto" and s.owner not in [*deps.experts, "shared"] for s in sources):
        raise InputError(f"unknown owner; choose one of: auto, {', '.join(deps.experts)}, shared")
    for source in sources:
        try:
            refuse_userinfo(source.target)
        except FetchError as exc:
            raise InputError(str(exc)) from None
    async with leased_syncer(deps, say) as syncer:
        report = SyncReport()
        for source in sources:
            await syncer.add_source(source)
            report.sources.append(await syncer.sync_source(source))
        return report


def print_report(report: SyncReport, as_json: bool) -> None:
    from copines.cli import emit_json, out

    if as_json:
        emit_json(report.as_dict())
        return
    for source in report.sources:
        c = source.counts
        # Names, addresses and error lines come from outside (titles, URLs): never markup.
        out.print(
            f"[bold]{escape(source.name)}[/] ({source.kind}) {source.status}: {c['added']} added, "
            f"{c['updated']} updated, {c['removed']} removed, {c['unchanged']} unchanged, "
            f"{c['refused']} refused, {c['errors']} errors",
            highlight=False,
            soft_wrap=True,
        )
        for line in source.errors:
            out.print(f"  [red]error[/] {escape(line)}", highlight=False, soft_wrap=True)


def exit_code(report: SyncReport, ingesting: bool = False) -> int:
    """1 when a source could not be listed, or (ingesting) when a source gave nothing."""
    for source in report.sources:
        kept = source.added or source.updated or source.unchanged
        if source.failed or (ingesting and source.errors and not kept):
            return 1
    return 0


def register(main: click.Group) -> None:
    from copines.cli import console, emit_json, out, run

    def plain(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    @main.command()
    @click.argument("names", nargs=-1)
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
    def sync(names: tuple[str, ...], as_json: bool) -> None:
        """Revisit every source (or those named): re-ingest what changed, remove what is gone."""

        async def job(deps: Deps) -> SyncReport:
            async with leased_syncer(deps, plain) as syncer:
                return await syncer.sync(list(names) or None)

        report = run(job)
        print_report(report, as_json)
        sys.exit(exit_code(report))

    @main.group(invoke_without_command=True)
    @click.option("--json", "as_json", is_flag=True, help="print the sources as JSON")
    @click.pass_context
    def sources(ctx: click.Context, as_json: bool) -> None:
        """List the sources with their last sync, counts and errors (subcommand: remove)."""
        if ctx.invoked_subcommand is not None:
            return

        async def job(deps: Deps) -> list[SourceRecord]:
            await Syncer(deps).register_file_sources()
            return await deps.store.list_sources()

        found = run(job)
        rows = [
            {
                "name": s.name,
                "kind": s.kind,
                "target": s.target,
                "owner": s.owner,
                "documents": s.documents,
                "last_sync_at": s.last_sync_at.isoformat() if s.last_sync_at else None,
                "last_status": s.last_status,
                "counts": s.counts,
                "errors": s.errors,
            }
            for s in found
        ]
        if as_json:
            emit_json(rows)
            return
        for row in rows:
            out.print(
                f"[bold]{escape(row['name'])}[/] {row['kind']} {escape(row['target'])} "
                f"owner={row['owner']} "
                f"documents={row['documents']} last={row['last_sync_at'] or 'never'} "
                f"{row['last_status']} errors={len(row['errors'])}",
                highlight=False,
                soft_wrap=True,
            )

    @sources.command("remove")
    @click.argument("name")
    def remove_source(name: str) -> None:
        """Stop syncing a source and delete the documents it made."""

        async def job(deps: Deps) -> list[str]:
            async with leased_syncer(deps, plain) as syncer:
                return await syncer.remove_source(name)

        removed = run(job)
        out.print(
            f"source '{name}' removed, with {len(removed)} documents", highlight=False, markup=False
        )
