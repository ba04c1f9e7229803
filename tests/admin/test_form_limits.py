"""Console forms refuse an oversized body before anything parses it, signed in or not: the
sign-in form, announced by its length or streamed in chunks, gets a 413 with a French page,
and no part of it is spooled to the temporary directory."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.conftest import TOKEN
from tests.api.live import LiveServer, live_server
from tests.conftest import make_settings

PIECE = 64 * 1024
SENT = 1536 * 1024  # past the 1 MB at which a form's file is spooled to disk


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's temporary directory (it runs in this process)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def console_server(
    tmp_path: Path, sample_knowledge_sqlite: Path, embedder, spool_dir: Path
) -> Iterator[LiveServer]:
    db = tmp_path / "console.db"
    shutil.copy(sample_knowledge_sqlite, db)
    settings = make_settings(tmp_path, database_url=f"sqlite:///{db}", admin_token=TOKEN)
    with live_server(settings, embedder=embedder) as server:
        yield server


def open_files_under(folder: Path) -> list[str]:
    """This process's open files inside `folder` (unlinked spool files included)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_sign_in_form_is_refused_unread(
    console_server: LiveServer, spool_dir: Path, chunked: bool
):
    port = int(console_server.url.rsplit(":", 1)[1])
    head = (
        b'--xyz\r\nContent-Disposition: form-data; name="token"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    framing = (
        b"Transfer-Encoding: chunked\r\n"
        if chunked
        else b"Content-Length: 104857600\r\n"  # 100 MB announced
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n" + framing + b"\r\n"
        )
        pieces = [head] + [b"x" * PIECE] * (SENT // PIECE)
        try:
            for piece in pieces:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        except OSError:
            pass  # the server answered and closed before the rest was sent: what we want
        time.sleep(0.5)
        spooled = open_files_under(spool_dir) + os.listdir(spool_dir)
        answer = b""
        try:
            while b"</html>" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass  # a reset after the answer; a timeout: no answer (the assert below says so)
    assert spooled == []
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert "Envoi trop volumineux" in answer.decode("utf-8", "replace")
