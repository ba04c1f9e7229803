"""The least a streamed chat service can do, for bench/load.py's floor: a bare ASGI app (no
framework, no store, no retrieval) under the same uvicorn as `copines serve`.

    /sleep/...  waits FLOOR_SECONDS, then streams one token and `done` (the inbound HTTP floor)
    /proxy/...  forwards one streamed completion from FLOOR_MODEL_URL, piece by piece (the
                floor of any service that calls a model over HTTP)

The benchmark's own client posts to `<base>/api/chat/stream` with `<base>` ending in /sleep or
/proxy, so both floors are measured by exactly the client that measures the service.
"""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp

MODEL_URL = os.environ.get("FLOOR_MODEL_URL", "http://127.0.0.1:9/chat/completions")
SECONDS = float(os.environ.get("FLOOR_SECONDS", "2"))
BODY = {"model": "expert", "stream": True, "messages": [{"role": "user", "content": "?"}]}
HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
DONE = b'event: done\ndata: {"response": "ok"}\n\n'

_session: aiohttp.ClientSession | None = None


async def app(scope, receive, send) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    if scope["path"].startswith("/sleep/"):
        await asyncio.sleep(SECONDS)
        await send(_event("token", {"text": "ok"}))
    else:
        assert _session is not None
        async with _session.post(MODEL_URL, json=BODY) as response:
            async for piece in response.content.iter_any():
                await send(_event("token", {"text": piece.decode("utf-8", "replace")}))
    await send({"type": "http.response.body", "body": DONE})


def _event(name: str, data: dict) -> dict:
    body = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
    return {"type": "http.response.body", "body": body, "more_body": True}
