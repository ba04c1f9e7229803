"""A fast fake OpenAI-compatible server for the load benchmark, run in a process of its own.

Chat completions (streamed or whole) answer after a set delay; the orchestrator model ("orch")
answers at once with a JSON decision; `/v1/embeddings` returns hashed bag-of-words vectors (as
tests/fakes/openai_embeddings.py). Unlike the test fakes, it listens with a backlog of 4096:
with the default 128 (or socketserver's 5), hundreds of simultaneous connections overflow the
queue and the kernel's SYN retries add whole seconds that are not the service's.

For each expert request it records when it arrived and when its first piece was written,
so the benchmark can subtract the model's own time to first token.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from tests.fakes.openai_embeddings import hashed_embedding

USAGE = {"prompt_tokens": 420, "completion_tokens": 90, "total_tokens": 510, "cost": 0.0021}


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _chunk(model: str, text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "bench",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


class FakeModels:
    def __init__(self, answer: str, decision: str):
        self.answer = answer
        self.decision = decision
        self.delay = 0.0
        self.records: list[tuple[float, float]] = []  # (arrived, first piece written)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()
        body = await request.json()
        model = str(body.get("model", ""))
        orchestrator = model == "orch"
        text = self.decision if orchestrator else self.answer
        if not orchestrator and self.delay:
            await asyncio.sleep(self.delay)
        if not body.get("stream"):
            if not orchestrator:
                self.records.append((arrived, time.perf_counter()))
            return web.json_response(
                {
                    "id": "bench",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": USAGE,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        try:
            for i in range(0, len(words), 4):
                piece = " ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "")
                await response.write(_sse(_chunk(model, piece)))
                if i == 0 and not orchestrator:
                    self.records.append((arrived, time.perf_counter()))
            await response.write(_sse(_chunk(model, "", "stop")))
            usage = {"id": "bench", "model": model, "choices": [], "usage": USAGE}
            await response.write(_sse(usage))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the client had what it wanted (the benchmark's client comparison)
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimensions = int(body.get("dimensions") or 512)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_embedding(t, dimensions)}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": 10, "total_tokens": 10}
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        )


def serve(conn, answer: str, decision: str) -> None:
    """Child process main: serve, then obey the pipe ("delay", s) / ("records",) / ("stop",)."""

    async def main() -> None:
        models = FakeModels(answer, decision)
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", models.chat)
        app.router.add_post("/v1/embeddings", models.embeddings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        conn.send({"url": f"http://127.0.0.1:{port}/v1"})
        loop = asyncio.get_running_loop()
        while True:
            command, *rest = await loop.run_in_executor(None, conn.recv)
            if command == "delay":
                models.delay = rest[0]
                models.records.clear()
                conn.send(True)
            elif command == "records":
                conn.send(list(models.records))
            else:
                break
        await runner.cleanup()
        conn.send(True)

    asyncio.run(main())
