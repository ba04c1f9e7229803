"""Real local HTTP servers that speak the vendors' protocols, for tests and benchmarks.

Each fake is a `FakeServer`: a threaded HTTP server bound to 127.0.0.1 on a free port, so the
real client code (httpx, retries, timeouts) runs against it. A test scripts what comes next
with `enqueue(Reply(...))` (a status code, a delay, a garbage body...) and reads what the
client sent in `requests`. When the script is empty the fake answers like the vendor would.

    with FakeCohere() as cohere:
        cohere.enqueue(Reply(status=500))
        ... CohereReranker(base_url=cohere.url, ...) ...
        assert cohere.requests[0].json["top_n"] == 3
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any = None  # the decoded body, when it was JSON


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        status: the HTTP status.
        json: a body to send as JSON (ignored when `body` is given).
        body: raw bytes to send as they are (garbage, truncated JSON...).
        headers: extra response headers (e.g. {"Retry-After": "0"}).
        delay: seconds to wait before answering (to trigger the client's timeout).
        chunks: a streamed body, written and flushed piece by piece (server-sent events).
        chunk_delay: seconds between two streamed pieces.
    """

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: list[bytes] | None = None
    chunk_delay: float = 0.0
    content_type: str = "application/json"


class FakeServer:
    """A scriptable HTTP server on 127.0.0.1; subclasses implement `handle` (the vendor)."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Scripting -----------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then go back to `handle`."""
        with self._lock:
            self._script.extend(replies)

    def fail(self, status: int, times: int = 1, **kwargs: Any) -> None:
        """The next `times` requests get `status` (with a small JSON error body)."""
        self.enqueue(
            *[Reply(status=status, json={"message": f"scripted {status}"}, **kwargs)] * times
        )

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def handle(self, request: Recorded) -> Reply:
        """The vendor's normal answer; subclasses override it."""
        return Reply(status=404, json={"message": f"no route {request.method} {request.path}"})

    # Lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:54321."""
        if self._server is None:
            raise RuntimeError("the fake server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    decoded = json.loads(raw) if raw else None
                except ValueError:
                    decoded = None
                request = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    raw,
                    decoded,
                )
                with fake._lock:
                    fake.requests.append(request)
                    scripted = fake._script.popleft() if fake._script else None
                reply = scripted or fake.handle(request)
                # The client may have given up (a timeout): that is the point of a delay.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    fake._write(self, reply)

            do_POST = do_GET = do_PUT = do_DELETE = _serve  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.name}-server", daemon=True
        )
        self._thread.start()
        return self

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        handler.send_response(reply.status)
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        if reply.chunks is not None:
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for piece in reply.chunks:
                handler.wfile.write(f"{len(piece):X}\r\n".encode() + piece + b"\r\n")
                handler.wfile.flush()
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            return
        if reply.body is not None:
            payload = reply.body
        elif reply.json is not None:
            payload = json.dumps(reply.json).encode()
        else:
            payload = b""
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
