"""A real local HTTP server speaking the OpenAI chat-completions protocol, scriptable per model.

It runs in its own thread (its own event loop), so both async tests and CLI tests that call
`asyncio.run` can use it. Each model has a queue of scripted steps (consumed one per request)
and a default step used when the queue is empty. Every request is recorded.

    with FakeChat() as fake:
        fake.script("orch", Reply('{"agent": "audrey", ...}'))
        fake.default("expert", Reply("Bonjour !", delay=0.1))
        fake.script("expert", Status(503), Status(503))   # then the fallback model answers
        settings = make_settings(tmp_path, llm_base_url=fake.url, ...)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """Answer `text` (streamed in `chunk_words`-word pieces when asked), after `delay` s."""

    text: str
    delay: float = 0.0
    cost: float | None = 0.0001
    prompt_tokens: int = 120
    completion_tokens: int = 40
    chunk_delay: float = 0.0
    chunk_words: int = 3


@dataclass
class Status:
    """Answer with this HTTP status (and a JSON error body)."""

    code: int
    delay: float = 0.0
    retry_after: float | None = None


@dataclass
class Hang:
    """Wait this long before answering at all (to trigger client timeouts)."""

    seconds: float
    then: Reply | None = None


@dataclass
class BreakStream:
    """Stream some text, then drop the connection."""

    text: str


@dataclass
class Raw:
    """Answer a whole (non-streamed) request with this JSON body as it is: a content that is
    an object, no choices, an empty text..."""

    body: Any


@dataclass
class RawStream:
    """Stream these SSE `data:` payloads as they are (objects are JSON-encoded, strings sent
    verbatim), `gap` seconds apart, then end the response; `done` adds `data: [DONE]`."""

    payloads: list[Any]
    gap: float = 0.0
    done: bool = False


Step = Reply | Status | Hang | BreakStream | Raw | RawStream


@dataclass
class Recorded:
    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    started: float  # time.perf_counter() when the request arrived
    ended: float = 0.0

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body.get("messages", [])

    @property
    def system(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "system")


@dataclass
class FakeChat:
    """The server; use as a context manager (it starts and stops its thread)."""

    fallback_reply: Reply = field(default_factory=lambda: Reply("Réponse de secours."))
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues: dict[str, deque[Step]] = defaultdict(deque)
        self._defaults: dict[str, Step] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # Scripting -------------------------------------------------------------------------
    def script(self, model: str, *steps: Step) -> None:
        """Queue steps for `model`, one per request."""
        with self._lock:
            self._queues[model].extend(steps)

    def default(self, model: str, step: Step) -> None:
        """What `model` does once its queue is empty."""
        with self._lock:
            self._defaults[model] = step

    def for_model(self, model: str) -> list[Recorded]:
        return [r for r in self.requests if r.model == model]

    def _next(self, model: str) -> Step:
        with self._lock:
            queue = self._queues.get(model)
            if queue:
                return queue.popleft()
            return self._defaults.get(model, self.fallback_reply)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # Server --------------------------------------------------------------------------
    def __enter__(self) -> FakeChat:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-openai-chat", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON"}}, status=400)
        model = str(body.get("model", ""))
        record = Recorded(model, dict(request.headers), body, arrived)
        self.requests.append(record)
        step = self._next(model)
        try:
            if isinstance(step, Hang):
                await asyncio.sleep(step.seconds)
                step = step.then or self.fallback_reply
            if isinstance(step, Status):
                await asyncio.sleep(step.delay)
                headers = {}
                if step.retry_after is not None:
                    headers["Retry-After"] = str(step.retry_after)
                return web.json_response(
                    {"error": {"message": f"scripted {step.code}", "code": step.code}},
                    status=step.code,
                    headers=headers,
                )
            if isinstance(step, Raw):
                return web.json_response(step.body)
            if isinstance(step, RawStream):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for payload in step.payloads:
                    data = payload if isinstance(payload, str) else json.dumps(payload)
                    await response.write(f"data: {data}\n\n".encode())
                    if step.gap:
                        await asyncio.sleep(step.gap)
                if step.done:
                    await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
                return response
            if isinstance(step, BreakStream):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                await response.write(_sse(_chunk(model, step.text)))
                request.transport.close()  # type: ignore[union-attr]
                return response
            await asyncio.sleep(step.delay)
            if body.get("stream"):
                return await self._stream(request, model, step)
            return web.json_response(
                {
                    "id": "fake-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": step.text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(step),
                }
            )
        finally:
            record.ended = time.perf_counter()

    async def _stream(self, request: web.Request, model: str, step: Reply) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(b": OPENROUTER PROCESSING\n\n")
        tokens = step.text.split(" ")
        for i in range(0, len(tokens), step.chunk_words):
            piece = " ".join(tokens[i : i + step.chunk_words])
            if i + step.chunk_words < len(tokens):
                piece += " "
            await response.write(_sse(_chunk(model, piece)))
            if step.chunk_delay:
                await asyncio.sleep(step.chunk_delay)
        final = _chunk(model, "")
        final["choices"][0]["finish_reason"] = "stop"
        await response.write(_sse(final))
        await response.write(
            _sse({"id": "fake-1", "model": model, "choices": [], "usage": _usage(step)})
        )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _chunk(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "fake-1",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _usage(step: Reply) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": step.prompt_tokens + step.completion_tokens,
    }
    if step.cost is not None:
        usage["cost"] = step.cost
    return usage
