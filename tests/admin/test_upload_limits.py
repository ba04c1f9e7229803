"""Hostile uploads: zip bombs, huge texts, too many files, uploads without a session; the
service keeps answering /healthz meanwhile."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from copines.errors import InputError
from copines.knowledge.parsing import ParseLimits, parse_document
from tests.admin.conftest import TOKEN, csrf_of
from tests.api.live import live_server
from tests.conftest import make_settings

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def docx_with(paragraph_xml: bytes, count: int) -> bytes:
    """A real docx (python-docx's own template) whose body is `count` copies of a paragraph."""
    import docx

    buffer = io.BytesIO()
    docx.Document().save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "word/document.xml":
                head, rest = data.split(b"<w:body>", 1)
                data = head + b"<w:body>" + paragraph_xml * count + rest
            target.writestr(info.filename, data)
    return out.getvalue()


def bomb() -> bytes:
    """About 21 MB of paragraph XML in a file of some 60 KB, like the one that froze main."""
    paragraph = b"<w:p><w:r><w:t>Lorem ipsum dolor sit amet</w:t></w:r></w:p>"
    return docx_with(paragraph, 21_000_000 // len(paragraph))


async def test_a_docx_bomb_is_refused_by_its_expanded_size():
    data = bomb()
    assert len(data) < 200_000
    started = time.perf_counter()
    with pytest.raises(InputError, match="décompressé"):
        await parse_document(Path("piege.docx"), data, ParseLimits(max_expanded_bytes=5_000_000))
    assert time.perf_counter() - started < 30


async def test_a_docx_lying_about_its_sizes_is_counted_as_it_is_read():
    data = docx_with(b"<w:p><w:r><w:t>abc</w:t></w:r></w:p>", 300_000)
    # Rewrite each central directory entry's declared size to 1 byte: the reader counts the
    # bytes it really gets.
    archive = zipfile.ZipFile(io.BytesIO(data))
    real = archive.getinfo("word/document.xml").file_size
    assert real > 5_000_000
    lying = data.replace(real.to_bytes(4, "little"), (1).to_bytes(4, "little"))
    from copines.knowledge.parsing import check_zip

    with pytest.raises(InputError):
        check_zip(lying, 2_000_000)


async def test_paragraph_page_and_time_limits_each_have_a_french_refusal():
    many = docx_with(b"<w:p><w:r><w:t>Un paragraphe.</w:t></w:r></w:p>", 3000)
    with pytest.raises(InputError, match="paragraphes"):
        await parse_document(Path("long.docx"), many, ParseLimits(max_paragraphs=1000))
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for i in range(5):
        pdf.add_page()
        pdf.cell(text=f"Page {i}")
    with pytest.raises(InputError, match="pages"):
        await parse_document(Path("pages.pdf"), bytes(pdf.output()), ParseLimits(max_pages=2))
    html = b"<html><body>" + b"<p>un paragraphe de texte</p>" * 200_000 + b"</body></html>"
    with pytest.raises(InputError, match="a pris plus de"):
        await parse_document(Path("lent.html"), html, ParseLimits(timeout=0.2))
    # Within the limits, the same kinds of files are read.
    loaded = await parse_document(Path("ok.docx"), docx_with(b"", 0) and many, ParseLimits())
    assert loaded.text.count("Un paragraphe.") == 3000


@pytest.fixture
def console_server(tmp_path: Path, sample_knowledge_sqlite: Path, embedder):
    import shutil

    db = tmp_path / "console.db"
    shutil.copy(sample_knowledge_sqlite, db)
    settings = make_settings(
        tmp_path,
        database_url=f"sqlite:///{db}",
        admin_token=TOKEN,
        parse_max_expanded_bytes=10_000_000,
        parse_max_paragraphs=5_000,
        upload_max_bytes=8_000_000,
    )
    with live_server(settings, embedder=embedder) as server:
        yield server


def signed_in(url: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=url, timeout=120)
    page = http.get("/admin/login")
    csrf = CSRF_RE.search(page.text).group(1)
    assert http.post("/admin/login", data={"token": TOKEN, "csrf_token": csrf}).status_code == 303
    page = http.get("/admin/knowledge")
    return http, CSRF_RE.search(page.text).group(1)


def test_healthz_answers_during_hostile_uploads(console_server):
    http, csrf = signed_in(console_server.url)
    worst: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=console_server.url, timeout=30) as probe:
            while not stop.is_set():
                started = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                worst.append(time.perf_counter() - started)
                time.sleep(0.05)

    text = ("Une phrase de cours sur les tunnels de vente et les emails. " * 12 + "\n\n") * 7000
    assert len(text.encode()) > 5_000_000
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        bad = http.post(
            "/admin/knowledge/upload",
            data={"csrf_token": csrf, "owner": "audrey"},
            files=[("files", ("piege.docx", bomb(), "application/octet-stream"))],
        )
        # 5 MB of text, read and parsed whole, then refused for its 7,000 paragraphs (5,000
        # in this test): the reading that blocked main, without embedding 5,000 passages.
        big = http.post(
            "/admin/knowledge/upload",
            data={"csrf_token": csrf, "owner": "audrey"},
            files=[("files", ("cours-long.txt", text.encode(), "text/plain"))],
        )
        # A 300 KB course, ingested whole: parsing, chunking and embedding off the loop.
        course = http.post(
            "/admin/knowledge/upload",
            data={"csrf_token": csrf, "owner": "audrey"},
            files=[("files", ("cours-moyen.txt", text[:300_000].encode(), "text/plain"))],
        )
    finally:
        stop.set()
        poller.join(30)
    assert bad.status_code == 200 and "décompressé" in bad.text
    assert big.status_code == 200 and "7001 paragraphes, 5000 au plus" in big.text
    assert course.status_code == 200 and "cours-moyen.txt" in course.text
    assert "ajouté" in course.text
    assert len(worst) > 5
    print(f"/healthz during the uploads: {len(worst)} probes, slowest {max(worst):.3f} s")
    # The loop stayed free: every probe answered well under a second (the bar).
    assert max(worst) < 1.0, f"slowest /healthz: {max(worst):.2f} s"


def test_an_upload_without_a_session_is_refused_before_its_body_is_read(console_server):
    port = int(console_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /admin/knowledge/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: 314572800\r\n\r\n" + b"x" * 65536
        )
        answer = sock.recv(400)
    # Answered at once (300 MB announced, 64 KB sent): off to the login page.
    assert answer.startswith(b"HTTP/1.1 303")
    assert b"location: /admin/login" in answer.lower()


def test_a_signed_in_upload_past_the_cap_is_refused_by_its_length(console_server):
    http, csrf = signed_in(console_server.url)
    response = http.post(
        "/admin/knowledge/upload",
        data={"csrf_token": csrf},
        files=[("files", ("gros.txt", b"a" * 9_000_000, "text/plain"))],
    )
    assert response.status_code == 413 and "trop gros" in response.json()["detail"]


async def test_the_21st_file_is_reported_not_dropped(admin):
    csrf = await csrf_of(admin, "/admin/knowledge")
    files = [
        ("files", (f"fiche-{i:02d}.md", f"# Fiche {i}\n\nContenu {i}.".encode(), "text/markdown"))
        for i in range(21)
    ]
    response = await admin.post(
        "/admin/knowledge/upload", data={"csrf_token": csrf, "owner": "shared"}, files=files
    )
    assert response.status_code == 200
    assert "fiche-20.md" in response.text and "20 fichiers au plus" in response.text


async def test_the_cli_refuses_a_huge_file_before_reading_it(tmp_path, knowledge_deps):
    from copines.knowledge.ingest import Ingester

    huge = tmp_path / "espaces.txt"
    with huge.open("wb") as out:
        out.truncate(400 * 1024 * 1024)  # 400 MB, sparse: nothing is written, nothing read
    deps = knowledge_deps
    ingester = Ingester(deps.store, deps.embedder, deps.experts, deps.tagger, ParseLimits())
    [result] = await ingester.ingest_paths([huge], owner="shared")
    assert result.status == "skipped" and "trop gros" in result.detail
