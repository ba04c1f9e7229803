"""Parsing uploaded files away from the event loop, under limits.

Small plain-text files (md, txt) are read on a thread; everything else (docx, pdf, html, and
large text) in a child process from a fork server, which is killed when its time budget
runs out, and whose address space is capped (RLIMIT_AS) so a decompression bomb runs out of
memory in the child, not in the server. Limits, each refused with a French sentence: the size
once decompressed (a docx's zip entries are read and counted piece by piece, their declared
sizes checked first), the number of paragraphs, the number of pages of a PDF, the memory and
the time. Parsing waits on its own two threads, never on the default executor that the
embedder and the searches share: uploads cannot hold up visitors' turns.
"""

from __future__ import annotations

import asyncio
import functools
import io
import multiprocessing
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copines.errors import InputError
from copines.knowledge.loaders import LoadedDocument, load_document

THREAD_MAX_BYTES = 256 * 1024  # md and txt up to this size are read on a thread


@dataclass(frozen=True)
class ParseLimits:
    max_expanded_bytes: int = 10 * 1024 * 1024
    max_paragraphs: int = 20_000
    max_pages: int = 500
    timeout: float = 30.0
    max_file_bytes: int = 20 * 1024 * 1024  # a file read from disk (the CLI)
    # Address space the child may take beyond what it holds when the parse begins (the
    # interpreter, the loaders and the file's bytes).
    max_memory_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> ParseLimits:
        return cls(
            max_expanded_bytes=settings.parse_max_expanded_bytes,
            max_paragraphs=settings.parse_max_paragraphs,
            max_pages=settings.parse_max_pages,
            timeout=settings.parse_timeout,
            max_file_bytes=settings.upload_max_bytes,
            max_memory_bytes=settings.parse_max_memory_bytes,
        )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} Mo"


def check_zip(data: bytes, limit: int, max_paragraphs: int | None = None) -> None:
    """Refuse a docx whose XML parts would expand past `limit` bytes (or hold more than
    `max_paragraphs` paragraphs), by their declared sizes first, then by the bytes really
    produced while reading them (a zip can lie). Other parts (images) may take four times
    `limit` in all."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError("fichier DOCX illisible : ce n'est pas une archive valide") from exc
    too_big = "fichier refusé : une fois décompressé son texte ferait {size}, {limit} au plus"
    with archive:
        infos = archive.infolist()
        xml = [i for i in infos if i.filename.endswith((".xml", ".rels"))]
        declared = sum(i.file_size for i in xml)
        if declared > limit or sum(i.file_size for i in infos) > 4 * limit:
            raise InputError(too_big.format(size=_mb(declared), limit=_mb(limit)))
        produced = paragraphs = 0
        for info in infos:
            is_xml = info in xml
            cap = limit if is_xml else 4 * limit
            seen = 0
            try:
                with archive.open(info) as entry:
                    while piece := entry.read(1024 * 1024):
                        seen += len(piece)
                        if is_xml:
                            produced += len(piece)
                            paragraphs += piece.count(b"<w:p>") + piece.count(b"<w:p ")
                        if produced > limit or seen > cap:
                            raise InputError(
                                "fichier refusé : une fois décompressé il dépasse "
                                f"{_mb(limit)} de texte"
                            )
                        if max_paragraphs is not None and paragraphs > max_paragraphs:
                            raise InputError(
                                f"fichier refusé : plus de {max_paragraphs} paragraphes"
                            )
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InputError("fichier DOCX illisible : archive abîmée") from exc


def check_pdf_pages(data: bytes, limit: int) -> None:
    from pypdf import PdfReader

    try:
        pages = len(PdfReader(io.BytesIO(data)).pages)
    except Exception:
        return  # the loader reports a broken PDF in its own words
    if pages > limit:
        raise InputError(f"PDF refusé : {pages} pages, {limit} au plus")


def parse_limited(path: Path, data: bytes, limits: ParseLimits) -> LoadedDocument:
    """Parse one file under `limits` (sizes and counts; the time is the caller's)."""
    suffix = path.suffix.lower()
    if suffix == ".docx":
        check_zip(data, limits.max_expanded_bytes, limits.max_paragraphs)
    elif suffix == ".pdf":
        check_pdf_pages(data, limits.max_pages)
    loaded = load_document(path, data)
    if len(loaded.text) > limits.max_expanded_bytes:
        raise InputError(f"fichier refusé : son texte dépasse {_mb(limits.max_expanded_bytes)}")
    paragraphs = loaded.text.count("\n\n") + 1
    if paragraphs > limits.max_paragraphs:
        raise InputError(
            f"fichier refusé : {paragraphs} paragraphes, {limits.max_paragraphs} au plus"
        )
    return loaded


def _limit_memory(extra: int) -> None:
    """Cap this process's address space at its current size plus `extra` bytes."""
    import resource

    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = current + extra
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


def _out_of_memory(exc: BaseException | None) -> bool:
    """True when a MemoryError is `exc` or among its causes."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _child(conn: Any, path: str, data: bytes, limits: ParseLimits) -> None:
    too_big = (
        f"fichier refusé : sa lecture demande plus de {_mb(limits.max_memory_bytes)} de mémoire"
    )
    try:
        _limit_memory(limits.max_memory_bytes)
        conn.send(("ok", parse_limited(Path(path), data, limits)))
    except MemoryError:
        conn.send(("input", too_big))
    except Exception as exc:
        if _out_of_memory(exc):  # a loader reported a MemoryError in its own words
            conn.send(("input", too_big))
        elif isinstance(exc, InputError):
            conn.send(("input", str(exc)))
        else:  # a loader's crash is the file's problem, reported as such
            conn.send(("input", f"fichier illisible ({type(exc).__name__})"))
    finally:
        conn.close()


_context_lock = threading.Lock()
_context: Any = None


def _process_context() -> Any:
    """A fork server with the loaders imported: each parse forks from a clean, small process
    (not from the server, with its threads and its models)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["copines.knowledge.loaders"])
            _context = ctx
        return _context


def _parse_in_process(path: Path, data: bytes, limits: ParseLimits) -> LoadedDocument:
    """Blocking: run the parse in a child process, kill it past the time budget."""
    ctx = _process_context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, str(path), data, limits), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(limits.timeout):
            raise InputError(f"fichier refusé : sa lecture a pris plus de {limits.timeout:g} s")
        try:
            kind, value = receive.recv()
        except EOFError as exc:  # the child died (out of memory in a library, killed)
            raise InputError(
                "fichier refusé : sa lecture a échoué (plus de "
                f"{_mb(limits.max_memory_bytes)} de mémoire ?)"
            ) from exc
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
    if kind != "ok":
        raise InputError(value)
    return value


async def parse_document(
    path: Path, data: bytes, limits: ParseLimits | None = None
) -> LoadedDocument:
    """Parse a file's bytes off the event loop, under `limits`.

    Raises:
        InputError: unsupported, empty, corrupt, or past a limit (a French sentence).
    """
    limits = limits or ParseLimits()
    loop = asyncio.get_running_loop()
    if path.suffix.lower() in (".md", ".markdown", ".txt") and len(data) <= THREAD_MAX_BYTES:
        work = functools.partial(parse_limited, path, data, limits)
    else:
        work = functools.partial(_parse_in_process, path, data, limits)
    return await loop.run_in_executor(_parse_pool(), work)


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _parse_pool() -> ThreadPoolExecutor:
    """Parsing's own threads (two: at most two files parse at once, the others queue)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="copines-parse")
        return _pool
