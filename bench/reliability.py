"""Reliability figures: how long the faults of issue 12 take to be handled, with the default
settings. Prints the figures (docs/reliability.md quotes them).

    .venv/bin/python bench/reliability.py

Measured here: a docx bomb's refusal (and the parent's peak RSS), the hand-over from a silent
primary model to the fallback, the apology when every model is silent, an endless trickle cut
at the turn deadline; all through the real chat client against the local fake model server.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.admin.test_upload_limits import bomb  # noqa: E402
from tests.fakes.openai_chat import FakeChat, Hang, RawStream, Reply  # noqa: E402

from copines.config import Settings  # noqa: E402
from copines.errors import InputError, ProviderError  # noqa: E402
from copines.knowledge.parsing import ParseLimits, parse_document  # noqa: E402
from copines.providers.chat import ChatClient  # noqa: E402

PROMPT = [{"role": "user", "content": "Bonjour"}]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def docx_bomb() -> None:
    data = bomb()
    before = rss_mb()
    started = time.perf_counter()
    try:
        await parse_document(Path("piege.docx"), data, ParseLimits.from_settings(Settings()))
        outcome = "accepted"
    except InputError as exc:
        outcome = f"refused: {exc}"
    took = time.perf_counter() - started
    print(
        f"docx bomb ({len(data) / 1024:.0f} KB, ~21 MB of XML): {outcome} in {took:.2f} s; "
        f"parent peak RSS {before:.0f} -> {rss_mb():.0f} MB"
    )


async def deadlines() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with FakeChat() as fake:
        client = ChatClient(
            base_url=fake.url,
            api_key="k",
            fallback_model="fallback",
            read_timeout=settings.llm_read_timeout,
            first_token_timeout=settings.llm_first_token_timeout,
            idle_timeout=settings.llm_idle_timeout,
            stream_deadline=settings.turn_deadline,
        )

        async def timed(model: str) -> tuple[float, str]:
            started = time.perf_counter()
            text = ""
            try:
                async for delta in client.stream(PROMPT, model):
                    text += delta.text
                outcome = f"answered ({text[:20]!r})"
            except ProviderError as exc:
                outcome = f"{type(exc).__name__} ({getattr(exc, 'cause', 'no model')})"
            return time.perf_counter() - started, outcome

        fake.default("silent", Hang(120))
        fake.default("fallback", Reply("Réponse de secours."))
        took, outcome = await timed("silent")
        print(f"silent primary -> fallback: {outcome} after {took:.1f} s")
        fake.default("fallback", Hang(120))
        took, outcome = await timed("silent")
        print(f"every model silent -> apology: {outcome} after {took:.1f} s")
        chunk = {"choices": [{"delta": {"content": "mot "}, "finish_reason": None}]}
        fake.default("trickle", RawStream([chunk] * 20, gap=10.0))
        took, outcome = await timed("trickle")
        print(f"one piece every 10 s -> cut: {outcome} after {took:.1f} s")
        await client.aclose()
    print(
        f"(settings: first token {settings.llm_first_token_timeout} s, idle "
        f"{settings.llm_idle_timeout} s, turn {settings.turn_deadline} s)"
    )


if __name__ == "__main__":
    asyncio.run(docx_bomb())
    asyncio.run(deadlines())
