"""The parsing child's memory cap: a PDF whose page expands to 70 MB (a decompression bomb
of some 70 KB) is refused with a French sentence once the child passes its memory limit, and
the same kind of file within the limit is read. Parsing has its own threads: a default
executor taken up by other work (the embedder, searches) does not hold it up."""

from __future__ import annotations

import asyncio
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from copines.errors import InputError
from copines.knowledge.parsing import ParseLimits, parse_document


def pdf_with_page(content: bytes) -> bytes:
    """A one-page PDF whose content stream is `content`, Flate-compressed."""
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


TEXT = b"BT /F1 12 Tf 72 720 Td (Une page de cours sur les tunnels de vente.) Tj ET\n"


async def test_a_pdf_bomb_is_refused_past_the_memory_limit():
    bomb = pdf_with_page(TEXT + b" " * 70_000_000)
    assert len(bomb) < 200_000
    limits = ParseLimits(max_memory_bytes=32 * 1024 * 1024, timeout=60)
    with pytest.raises(InputError, match="plus de 32 Mo de mémoire"):
        await parse_document(Path("piege.pdf"), bomb, limits)


async def test_the_same_pdf_within_the_limit_is_read():
    loaded = await parse_document(Path("cours.pdf"), pdf_with_page(TEXT), ParseLimits())
    assert "tunnels de vente" in loaded.text


async def test_parsing_does_not_wait_for_the_default_executor():
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    release = threading.Event()
    busy = loop.run_in_executor(None, release.wait, 60)  # the default executor's only thread
    try:
        small = parse_document(Path("note.md"), b"# Note\n\nUn paragraphe.", ParseLimits())
        big = parse_document(Path("cours.pdf"), pdf_with_page(TEXT), ParseLimits())
        loaded = await asyncio.wait_for(asyncio.gather(small, big), 30)
    finally:
        release.set()
        await busy
    assert "Un paragraphe." in loaded[0].text and "tunnels de vente" in loaded[1].text
