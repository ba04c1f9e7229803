"""Thin commands over the modules: ingest, documents, search, reindex (and more per issue)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from copines.config import Settings, get_settings
from copines.deps import Deps
from copines.errors import CopinesError

T = TypeVar("T")
console = Console(stderr=True)
out = Console()


def run(fn: Callable[[Deps], Awaitable[T]], settings: Settings | None = None) -> T:
    """Build the dependencies, run one async job, close everything; errors end the command."""

    async def main() -> T:
        deps = await Deps.create(settings or get_settings())
        try:
            return await fn(deps)
        finally:
            await deps.aclose()

    try:
        return asyncio.run(main())
    except CopinesError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


@click.group()
@click.version_option(package_name="copines")
def main() -> None:
    """copines: the assistant of L'Agence des Copines (Audrey, Carole and the team)."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--owner", default="auto", show_default=True, help="auto, an expert id, or shared")
@click.option("--replace", is_flag=True, help="re-process files even when unchanged")
@click.option("--sitemap", "kind", flag_value="sitemap", help="each URL is a sitemap")
@click.option("--crawl", "kind", flag_value="crawl", help="crawl from each URL, following links")
@click.option("--prefix", help="sitemap or crawl: only addresses starting with this")
@click.option("--max-pages", type=click.IntRange(1, 10_000), help="sitemap or crawl: at most")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def ingest(
    paths: tuple[str, ...],
    owner: str,
    replace: bool,
    kind: str | None,
    prefix: str | None,
    max_pages: int | None,
    as_json: bool,
) -> None:
    """Add files or folders (md, txt, html, pdf, docx), or web pages by URL (a page, a sitemap
    ending in .xml or given with --sitemap, or a crawl with --crawl), to the knowledge bases.
    URLs become sources that `copines sync` revisits."""
    from copines.cli_sources import exit_code, ingest_urls, is_url, print_report, url_source

    urls = [p for p in paths if is_url(p)]
    if urls:
        sources = [url_source(u, kind, prefix, max_pages, owner) for u in urls]
        report = run(
            lambda deps: ingest_urls(
                deps,
                sources,
                lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True),
            )
        )
        print_report(report, as_json)
        if len(urls) == len(paths):
            sys.exit(exit_code(report, ingesting=True))
    files_given = [Path(p) for p in paths if not is_url(p)]
    if files_given:
        _ingest_files(tuple(files_given), owner, replace, as_json)


def _ingest_files(paths: tuple[Path, ...], owner: str, replace: bool, as_json: bool) -> None:
    """Ingest files and folders, with a progress bar and a table of results."""

    async def job(deps: Deps) -> list:
        ingester = deps.ingester()
        from copines.knowledge.ingest import collect_files

        files, _ = collect_files(paths)
        with Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as progress:
            task = progress.add_task("", total=len(files))
            return await ingester.ingest_paths(
                paths,
                owner=owner,
                replace=replace,
                on_file=lambda path, _r: progress.update(task, advance=1, description=path.name),
            )

    results = run(job)
    if as_json:
        emit_json([r.__dict__ for r in results])
    else:
        table = Table(title="Ingestion")
        for column in ("file", "status", "owner", "why", "chunks"):
            table.add_column(column)
        for r in results:
            why = r.detail if r.skipped else r.reason
            style = "red" if r.skipped else ("dim" if r.status == "unchanged" else "")
            table.add_row(r.filename, r.status, r.owner, why, str(r.chunks), style=style)
        out.print(table)
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        close = sum(1 for r in results if "too close to call" in r.reason)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        out.print(summary + (f"; {close} too close to call, tagged shared" if close else ""))
    if results and all(r.skipped for r in results):
        sys.exit(1)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print the documents as JSON")
@click.pass_context
def documents(ctx: click.Context, as_json: bool) -> None:
    """List the documents with their owner (subcommands: set-owner, delete)."""
    if ctx.invoked_subcommand is not None:
        return
    docs = run(lambda deps: deps.store.list_documents())
    if as_json:
        emit_json(
            [
                {
                    "filename": d.filename,
                    "owner": d.owner,
                    "chunks": d.chunks,
                    "title": d.title,
                    "owner_reason": d.owner_reason,
                    "updated_at": d.updated_at.isoformat() if d.updated_at else None,
                }
                for d in docs
            ]
        )
        return
    table = Table(title=f"{len(docs)} documents")
    for column in ("file", "owner", "chunks", "why", "updated"):
        table.add_column(column)
    for d in docs:
        updated = d.updated_at.strftime("%Y-%m-%d %H:%M") if d.updated_at else ""
        table.add_row(d.filename, d.owner, str(d.chunks), d.owner_reason, updated)
    out.print(table)


@documents.command("set-owner")
@click.argument("filename")
@click.argument("owner")
def set_owner(filename: str, owner: str) -> None:
    """Give a document to an expert or to the shared base."""

    async def job(deps: Deps) -> None:
        from copines.experts import owner_choices

        if owner not in owner_choices(deps.experts):
            from copines.errors import InputError

            raise InputError(
                f"unknown owner '{owner}'; choose one of: {', '.join(owner_choices(deps.experts))}"
            )
        await deps.store.set_owner(filename, owner, "set by hand")

    run(job)
    out.print(f"{filename} now belongs to {owner}")


@documents.command("delete")
@click.argument("filename")
def delete_document(filename: str) -> None:
    """Delete a document and its passages."""
    run(lambda deps: deps.store.delete_document(filename))
    out.print(f"deleted {filename}")


@main.command()
def reindex() -> None:
    """Re-embed every passage with the configured embedder (after switching embedders)."""

    async def job(deps: Deps) -> int:
        return await deps.ingester().reindex(
            lambda done, total: console.print(f"reindexed {done}/{total}", end="\r")
        )

    n = run(job)
    out.print(f"reindexed {n} passages")


def _passage_json(p: Any) -> dict[str, Any]:
    return {
        "filename": p.filename,
        "owner": p.owner,
        "score": p.score,
        "text": p.text,
        "heading": p.heading_path,
        "url": p.url,
        "dense_score": round(p.dense_score, 4),
    }


@main.command()
@click.argument("query", required=False)
@click.option("--expert", help="whose knowledge to search (an expert id)")
@click.option("-k", "k", type=int, default=None, help="how many passages (default 3)")
@click.option("--json", "as_json", is_flag=True, help="print the passages as JSON")
@click.option("--jsonl", type=click.File("r"), help='batch: lines {"id", "query", "expert"}')
def search(query: str | None, expert: str | None, k: int | None, as_json: bool, jsonl) -> None:
    """Show the passages an expert would get for a question."""
    if jsonl is None and (not query or not expert):
        raise click.UsageError("give QUERY and --expert, or --jsonl FILE")

    if jsonl is not None:

        async def batch(deps: Deps) -> None:
            for number, line in enumerate(jsonl, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    emit_json(
                        {"id": None, "error": f"line {number}: not JSON ({exc})", "results": []}
                    )
                    continue
                ident = item.get("id") if isinstance(item, dict) else None
                query_text = item.get("query") if isinstance(item, dict) else None
                name = item.get("expert") if isinstance(item, dict) else None
                if not isinstance(query_text, str) or not query_text.strip():
                    error = f"line {number}: a non-empty 'query' is required"
                    emit_json({"id": ident, "error": error, "results": []})
                    continue
                if not isinstance(name, str):
                    error = f"line {number}: 'expert' is required"
                    emit_json({"id": ident, "error": error, "results": []})
                    continue
                try:
                    result = await deps.retriever.search(name, query_text, k=k)
                except CopinesError as exc:
                    emit_json({"id": ident, "error": str(exc), "results": []})
                    continue
                emit_json({"id": ident, "results": [_passage_json(p) for p in result.passages]})

        run(batch)
        return

    result = run(lambda deps: deps.retriever.search(expert, query, k=k))
    if as_json:
        emit_json([_passage_json(p) for p in result.passages])
        return
    if not result.passages:
        out.print("no passage found")
    for i, p in enumerate(result.passages, 1):
        out.print(f"[bold]{i}. {p.filename}[/] ({p.owner}, score {p.score:.3f}) {p.heading_path}")
        out.print(p.text[:600] + ("…" if len(p.text) > 600 else ""))
        out.print()


# Commands that live beside the part they drive; each module defines `register(main)`.
COMMAND_MODULES = (
    "copines.cli_turn",
    "copines.cli_web",
    "copines.cli_prod",
    "copines.cli_admin",
    "copines.cli_sources",
)


def _register_command_modules() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that part is not built in this checkout
            raise
        module.register(main)


_register_command_modules()

if __name__ == "__main__":
    main()
